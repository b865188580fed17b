"""How much longer than the drain the parent-shutdown time must be (issue 10, case
`drain-equals-parent-shutdown-values.yaml`), measured on plain Envoy, and the agent refusing less.

Envoy starts the parent's drain (`--drain-time-s`) and the child's parent-shutdown timer
(`--parent-shutdown-time-s`) at the same moment, when the child starts its workers. With gradual drain,
a request on the parent's connections is told to close (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY)
with a probability that reaches 1 at the drain time; that request and any request the client sent
before hearing it must still finish before Terminate makes the parent exit. The measurement below runs
the agent's default bootstrap under HTTP/1.1 and HTTP/2 load through three hot restarts per setting.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE, render, template_values
from agent.config import load_config
from podharness import envoyproc
from podharness.load import LoadConfig, LoadGenerator
from podharness.metrics import sample
from podharness.pod import Pod
from podharness.sidecar import TCP_UPSTREAM_PORT, UPSTREAM_PORT, SidecarPod, make_image
from tests.integration.agent.checks import assert_hitless, assert_serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RESTARTS = 3


def _bootstrap(pod: Pod, *, drain: int, parent_shutdown: int) -> str:
    """The agent's default bootstrap, rendered as the agent renders it for the harness pod."""
    environ = {
        contract.ENV_SLOT: "a",
        contract.ENV_DRAIN_SECONDS: str(drain),
        contract.ENV_PARENT_SHUTDOWN_SECONDS: str(parent_shutdown),
        contract.ENV_UPSTREAM_PORT: str(UPSTREAM_PORT),
        contract.ENV_TCP_UPSTREAM_PORT: str(TCP_UPSTREAM_PORT),
    }
    path = pod.base / "envoy-default.yaml"
    path.write_text(render(DEFAULT_TEMPLATE.read_text(), template_values(environ, load_config(environ))))
    return str(path)


def lost_requests(pod: Pod, *, drain: int, parent_shutdown: int) -> dict[str, int]:
    """Failed HTTP/1.1 and HTTP/2 requests over RESTARTS plain hot restarts under load."""
    SidecarPod(pod, drain_seconds=drain, parent_shutdown_seconds=parent_shutdown).start_app()
    config = _bootstrap(pod, drain=drain, parent_shutdown=parent_shutdown)

    def start(name: str, epoch: int) -> None:
        argv = envoyproc.envoy_argv(
            Path(config), epoch=epoch, drain_seconds=drain, parent_shutdown_seconds=parent_shutdown
        )
        pod.container(name).start(argv, {})

    start("a", 0)
    pod.wait_port(contract.LISTEN_PORT, timeout=30)
    load = LoadGenerator(
        LoadConfig(
            host=pod.ip, http_port=contract.LISTEN_PORT, tcp_port=contract.TCP_LISTEN_PORT, tcp_connections=0
        )
    ).start()
    time.sleep(1)
    names = ("a", "b")
    for epoch in range(1, RESTARTS + 1):
        new, old = names[epoch % 2], names[(epoch - 1) % 2]
        start(new, epoch)
        assert pod.container(old).wait(timeout=60) == 0, "the parent exits 0 after Terminate"
        time.sleep(0.5)
    summary = load.stop()
    print(f"drain={drain}s parent_shutdown={parent_shutdown}s: {summary}")
    assert summary["requests"] > 1000
    return {kind: summary["by_kind"][kind]["failed"] for kind in ("http1", "http2")}


def test_parent_shutdown_equal_to_the_drain_loses_in_flight_requests(pod: Pod) -> None:
    lost = lost_requests(pod, drain=1, parent_shutdown=1)
    assert sum(lost.values()) > 0, lost


def test_parent_shutdown_one_second_past_the_drain_loses_none(pod: Pod) -> None:
    lost = lost_requests(pod, drain=1, parent_shutdown=1 + contract.SHUTDOWN_MARGIN_SECONDS)
    assert lost == {"http1": 0, "http2": 0}


def test_the_agent_refuses_a_parent_shutdown_without_the_margin(sidecar_pod: SidecarPod) -> None:
    """The drain-equals-parent-shutdown values reach a new slot: it starts no Envoy and says why."""
    case = {contract.ENV_DRAIN_SECONDS: "1", contract.ENV_PARENT_SHUTDOWN_SECONDS: "1"}
    image = make_image(sidecar_pod.pod.base, "sidecar:drain-equals-shutdown", env=case)
    load = LoadGenerator(
        LoadConfig(host=sidecar_pod.pod.ip, http_port=contract.LISTEN_PORT, tcp_port=contract.TCP_LISTEN_PORT)
    ).start()
    try:
        sidecar_pod.stop("b")
        sidecar_pod.start_sidecar("b", image)
        rc, out = sidecar_pod.post_start("b")
        assert rc == 0 and "phase failed" in out and "slot a serves on" in out, out  # agent/hook.py
        assert "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS=1 must be at least HOTUPGRADE_DRAIN_SECONDS=1 + 1s" in out
        status = sidecar_pod.status("b")
        assert (status["phase"], status["role"]) == ("failed", "standby")
        assert "must be at least" in status["last_error"]
        assert (
            sample(sidecar_pod.metrics("b"), "hotupgrade_agent_failures_total", {"reason": "bad_config"}) == 1
        )
        assert sidecar_pod.envoy_pids("b") == [], "no Envoy starts with a timing that cannot be hitless"
        assert sidecar_pod.state()["slots"]["b"]["phase"] == "failed"
        assert_serving(sidecar_pod, "a", 0)
        assert sidecar_pod.stop("b") == 0
    finally:
        summary = load.stop()
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=0)  # refused: the old Envoy serves on
