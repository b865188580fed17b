"""Faults during a hot upgrade, each under load: what must keep serving, and what must be recorded."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from podharness.load import LoadGenerator
from podharness.metrics import sample
from podharness.sidecar import SidecarPod, make_image
from tests.integration.agent.checks import assert_hitless, assert_serving, start_load
from tests.integration.agent.conftest import PARENT_SHUTDOWN_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# The Envoy child aborts about 10 s after its parent vanished unless the agent covers for it.
PARENT_DEATH_ABORT_WINDOW_S = 10


def assert_no_failures(load: LoadGenerator, *, upgrades: int) -> None:
    """Stop the load, which saw `upgrades` completed: it made requests and was hitless."""
    summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=upgrades)


# Two bad bootstraps of a new image. Envoy's validate mode rejects the first, so the agent refuses the
# takeover before any hot restart and the old Envoy keeps its admin API. The second (a listener on an
# address the pod does not have) passes validation and only fails when the child binds it: after
# ShutdownAdmin and with INITIALIZING set, so the old Envoy serves on without admin.
INVALID = "invalid"
FAILS_IN_INIT = "fails-in-init"
BAD_BOOTSTRAPS = {
    INVALID: ("cluster: app }", "cluster: no_such_cluster }"),
    FAILS_IN_INIT: (
        "address: 0.0.0.0, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}",
        "address: 203.0.113.1, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}",
    ),
}


def _fail_a_takeover(sidecars: SidecarPod, fault: str) -> None:
    """Start slot b with a bootstrap Envoy cannot run: its slot fails, its postStart hook passes (the old
    Envoy serves on, agent/hook.py) and says so."""
    good, bad = BAD_BOOTSTRAPS[fault]
    template = DEFAULT_TEMPLATE.read_text()
    assert template.count(good) == 1
    bad_template = sidecars.pod.base / f"bad-envoy-{fault}.yaml.tmpl"
    bad_template.write_text(template.replace(good, bad))
    image = make_image(
        sidecars.pod.base, f"sidecar:{fault}", env={contract.ENV_BOOTSTRAP_TEMPLATE: str(bad_template)}
    )
    sidecars.stop("b")
    sidecars.start_sidecar("b", image)
    rc, out = sidecars.post_start("b")
    assert rc == 0 and "phase failed" in out and "slot a serves on" in out, out  # agent/hook.py
    assert sidecars.status("b")["phase"] == "failed"


def agent_events(sidecars: SidecarPod, slot: str) -> list[dict[str, Any]]:
    """The agent's structured log (one JSON object per line) from slot's container output."""
    lines = sidecars.container(slot).logs().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_new_envoy_with_invalid_bootstrap_is_refused_before_hot_restart(sidecar_pod: SidecarPod) -> None:
    load = start_load(sidecar_pod)
    try:
        _fail_a_takeover(sidecar_pod, INVALID)

        status = sidecar_pod.status("b")
        assert status["phase"] == "failed" and status["role"] != "active"
        assert "unknown cluster 'no_such_cluster'" in status["last_error"]
        state = sidecar_pod.state()
        assert state["slots"]["b"]["phase"] == "failed"
        assert "unknown cluster 'no_such_cluster'" in state["slots"]["b"]["error"]
        metrics = sidecar_pod.metrics("b")
        assert sample(metrics, "hotupgrade_agent_failures_total", {"reason": "invalid_bootstrap"}) == 1
        assert (sample(metrics, "hotupgrade_agent_failures_total", {"reason": "start_failed"}) or 0) == 0
        assert sidecar_pod.envoy_pids("b") == [], "no Envoy may start from a bootstrap that failed validation"
        assert "envoy-spawned" not in [e["event"] for e in agent_events(sidecar_pod, "b")]
        assert_serving(sidecar_pod, "a", 0)  # admin API included: no ShutdownAdmin happened

        sidecar_pod.stop("b")  # kubelet kills a container whose postStart failed
        assert_serving(sidecar_pod, "a", 0)
        sidecar_pod.upgrade("b")  # the next attempt, with a good image
        assert_serving(sidecar_pod, "b", 1)
    finally:
        assert_no_failures(load, upgrades=1)  # the failed take-over ended no Envoy; the next one did


def test_new_envoy_failing_in_init_leaves_old_serving_and_next_attempt_succeeds(
    sidecar_pod: SidecarPod,
) -> None:
    load = start_load(sidecar_pod)
    try:
        _fail_a_takeover(sidecar_pod, FAILS_IN_INIT)

        status = sidecar_pod.status("b")
        assert status["phase"] == "failed" and status["role"] != "active"
        assert "before it was LIVE" in status["last_error"]
        state = sidecar_pod.state()
        assert state["slots"]["b"]["phase"] == "failed" and state["slots"]["b"]["error"]
        assert (
            sample(sidecar_pod.metrics("b"), "hotupgrade_agent_failures_total", {"reason": "start_failed"})
            or 0
        ) >= 1
        validated = [e for e in agent_events(sidecar_pod, "b") if e["event"] == "bootstrap-validated"]
        assert validated and {e["verdict"] for e in validated} == {"BootstrapValid"}
        assert_serving(sidecar_pod, "a", 0, admin=False)

        sidecar_pod.stop("b")  # kubelet kills a container whose postStart failed
        assert_serving(sidecar_pod, "a", 0, admin=False)
        sidecar_pod.upgrade("b")  # the next attempt, with a good image, clears INITIALIZING
        assert_serving(sidecar_pod, "b", 1)
    finally:
        assert_no_failures(load, upgrades=1)  # the failed take-over ended no Envoy; the next one did


def test_old_envoy_killed_mid_drain_leaves_new_serving(sidecar_pod: SidecarPod) -> None:
    sidecar_pod.stop("b")
    sidecar_pod.start_sidecar("b")
    rc, out = sidecar_pod.post_start("b")
    assert rc == 0, out
    new_envoy = sidecar_pod.envoy_pids("b")
    old_envoy = sidecar_pod.envoy_pids("a")
    assert len(new_envoy) == 1 and len(old_envoy) == 1

    os.kill(old_envoy[0], signal.SIGKILL)  # connections still on the old Envoy die with it: not asserted
    time.sleep(0.2)
    load = start_load(sidecar_pod)
    try:
        # Past the parent-shutdown time and the window in which an orphaned child would abort.
        time.sleep(PARENT_SHUTDOWN_SECONDS + PARENT_DEATH_ABORT_WINDOW_S + 3)
        assert sidecar_pod.envoy_pids("b") == new_envoy, "the new Envoy was never restarted or replaced"
        assert_serving(sidecar_pod, "b", 1)
        assert sidecar_pod.envoy_pids("a") == [], "the old agent must not restart a replaced Envoy"
        assert sidecar_pod.state()["slots"]["a"]["phase"] == "retired"
    finally:
        assert_no_failures(load, upgrades=0)  # the old Envoy was killed before the load


def test_hot_restart_version_mismatch_is_refused_cleanly(sidecar_pod: SidecarPod) -> None:
    other = make_image(sidecar_pod.pod.base, "sidecar:other-hot-restart", hot_restart_version="99.999")
    load = start_load(sidecar_pod)
    try:
        sidecar_pod.stop("b")
        sidecar_pod.start_sidecar("b", other)
        rc, out = sidecar_pod.post_start("b")
        assert rc == 0 and "phase failed" in out and "slot a serves on" in out, out  # agent/hook.py

        status = sidecar_pod.status("b")
        assert status["phase"] == "failed" and status["role"] != "active"
        assert status["hot_restart_version"] == "99.999"
        assert "99.999" in status["last_error"] and "11.104" in status["last_error"]
        state = sidecar_pod.state()
        assert state["hot_restart_version"] == "11.104"
        assert "99.999" in (state["slots"]["b"]["error"] or "")
        assert sample(sidecar_pod.metrics("b"), "hotupgrade_agent_failures_total", {"reason": "refused"}) == 1
        assert sidecar_pod.envoy_pids("b") == [], "a refused slot never starts Envoy"
        assert_serving(sidecar_pod, "a", 0)
        assert sidecar_pod.stop("b") == 0
        assert_serving(sidecar_pod, "a", 0)
    finally:
        assert_no_failures(load, upgrades=0)  # refused: the old Envoy serves on


def test_sigterm_to_retired_agent_leaves_active_untouched(sidecar_pod: SidecarPod) -> None:
    load = start_load(sidecar_pod)
    try:
        sidecar_pod.stop("b")
        sidecar_pod.start_sidecar("b")
        rc, out = sidecar_pod.post_start("b")
        assert rc == 0, out
        # The new agent may record the old Envoy's exit in the state file a moment before the old agent
        # itself notices it: wait for both.
        sidecar_pod.wait_for(
            "a retired",
            lambda: sidecar_pod.slot_phase("a") == sidecar_pod.status("a")["phase"] == "retired",
            timeout=60,
        )
        envoy_b = sidecar_pod.envoy_pids("b")
        retired = sidecar_pod.status("a")
        assert (retired["role"], retired["phase"], retired["epoch"]) == ("retired", "retired", 0)
        assert sidecar_pod.envoy_pids("a") == []

        stopping = time.monotonic()
        assert sidecar_pod.stop("a", grace=30) == 0
        assert time.monotonic() - stopping < 10, "a retired agent has nothing to drain"

        time.sleep(1)
        assert sidecar_pod.envoy_pids("b") == envoy_b
        assert_serving(sidecar_pod, "b", 1)
    finally:
        assert_no_failures(load, upgrades=1)


def _slow_get(host: str, path: str) -> int:
    conn = http.client.HTTPConnection(host, contract.LISTEN_PORT, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.parametrize("fault", [None, INVALID, FAILS_IN_INIT], ids=["plain", INVALID, FAILS_IN_INIT])
def test_sigterm_to_active_agent_drains_without_failing_in_flight_requests(
    sidecar_pod: SidecarPod, fault: str | None
) -> None:
    if fault is not None:
        # After a refused takeover the admin API still answers; after a child that failed in init it
        # is closed for good (ShutdownAdmin). Either way the pod-deletion drain must not fail a request.
        _fail_a_takeover(sidecar_pod, fault)
        sidecar_pod.stop("b")
    admin_open = fault != FAILS_IN_INIT
    if admin_open:
        info = sidecar_pod.envoy_server_info()  # GET /server_info on the admin port, inside the pod netns
        assert (info["state"], info["command_line_options"]["restart_epoch"]) == ("LIVE", 0)
    load = start_load(sidecar_pod)
    with ThreadPoolExecutor(max_workers=6) as pool:
        slow = [pool.submit(_slow_get, sidecar_pod.pod.ip, "/slow?ms=1500") for _ in range(6)]
        time.sleep(0.7)  # well inside the 1.5 s the upstream holds each of them
        sidecar_pod.sigterm("a")
        summary = load.stop()  # the pod's endpoints are gone: no new requests, in-flight ones finish
        assert [f.result(timeout=30) for f in slow] == [200] * 6

    assert sidecar_pod.container("a").wait(timeout=contract.DRAIN_SECONDS + 30) == 0
    assert summary["failed"] == 0, summary["failures"]
    with pytest.raises(OSError):
        sidecar_pod.pod.wait_port(contract.LISTEN_PORT, timeout=0)
    events = [e["event"] for e in agent_events(sidecar_pod, "a")]
    assert "draining" in events and "drain-failed" not in events
    # The graceful admin drain when the admin API answers; Envoy's DrainListeners only when it cannot.
    assert ("drain-without-admin" in events) is not admin_open
