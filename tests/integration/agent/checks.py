"""Shared by the agent's integration tests: what "serving" and "closed cleanly" mean, and the load."""

from __future__ import annotations

from agent import contract
from podharness.load import LoadConfig, LoadGenerator
from podharness.loadstats import LoadRecord, disallowed_failures, summarize
from podharness.sidecar import SidecarPod, Timings
from tests.integration.agent.conftest import PARENT_SHUTDOWN_SECONDS

TCP_CONNECTIONS = 3
# Slack for a slow, shared machine around "the TCP connection closed when the old Envoy exited".
CLOSE_SLACK_S = 1.0


def start_load(
    sidecars: SidecarPod,
    *,
    tcp_connections: int = 2,
    request_timeout_s: float = 10.0,
    http_port: int = contract.LISTEN_PORT,
    tcp_port: int = contract.TCP_LISTEN_PORT,
) -> LoadGenerator:
    """HTTP/1.1, HTTP/2 and long-lived TCP load at the pod's IP (Envoy's listeners unless other ports are
    named: the app's, with capture), started."""
    config = LoadConfig(
        host=sidecars.pod.ip,
        http_port=http_port,
        tcp_port=tcp_port,
        tcp_connections=tcp_connections,
        request_timeout_s=request_timeout_s,
    )
    return LoadGenerator(config).start()


def assert_serving(sidecars: SidecarPod, slot: str, epoch: int, *, admin: bool = True) -> None:
    """slot's agent reports active/serving at epoch, the state file agrees, Envoy is LIVE at that epoch.

    admin=False skips Envoy's admin API: a parent Envoy closes it for good when a child starts, even a
    child that then fails (ShutdownAdmin is the first hot-restart message)."""
    status = sidecars.status(slot)
    assert (status["slot"], status["role"], status["phase"], status["epoch"]) == (
        slot,
        "active",
        "serving",
        epoch,
    )
    assert status["last_error"] is None
    state = sidecars.state()
    assert (state["active_slot"], state["epoch"]) == (slot, epoch)
    assert state["slots"][slot]["phase"] == "serving"
    assert state["hot_restart_version"] == status["hot_restart_version"]
    if not admin:
        return
    info = sidecars.envoy_server_info()
    assert info["state"] == "LIVE"
    assert info["command_line_options"]["restart_epoch"] == epoch


def assert_hitless(load: LoadGenerator, *, upgrades: int) -> None:
    """The stopped load saw no failure but the one podharness.loadstats.disallowed_failures allows (the
    rule `make demo` and e2e judge by): an echo in flight when an old Envoy's exit closed its TCP connection
    with a FIN, at most once per connection and upgrade. `upgrades`: the old Envoys the load saw exit (or
    could have: the take-overs completed while it ran)."""
    _assert_hitless(load.record, tcp_connections=load.config.tcp_connections, upgrades=upgrades)


def _assert_hitless(record: LoadRecord, *, tcp_connections: int, upgrades: int) -> None:
    summary = summarize(record)
    why = disallowed_failures(summary, tcp_connections=tcp_connections, upgrades=upgrades)
    assert why == [], (why, summary["failures"], record.tcp_closes)


def assert_tcp_closed_only_at_parent_shutdown(record: LoadRecord, timings: list[Timings]) -> None:
    """Hitless (assert_hitless, for TCP_CONNECTIONS connections), each connection closed once per upgrade,
    and only when the old Envoy exits."""
    _assert_hitless(record, tcp_connections=TCP_CONNECTIONS, upgrades=len(timings))
    assert len(record.tcp_closes) == TCP_CONNECTIONS * len(timings), "one close per connection per upgrade"
    windows = [
        (
            (t.state_serving_since or t.live) + PARENT_SHUTDOWN_SECONDS - CLOSE_SLACK_S,
            t.retired + CLOSE_SLACK_S,
        )
        for t in timings
    ]
    for close in record.tcp_closes:
        assert any(low <= close.at <= high for low, high in windows), f"{close} outside {windows}"
