"""A hung old Envoy during the hand-over (issue 12, scenario 4): bounded, never blocked forever, serving.

Envoy's hot-restart child waits for each reply of its parent with a blocking recvmsg and no timeout,
so a parent that stops answering (SIGSTOP here; a stuck main thread in the wild) stalls the child:
during the handshake, its start; during the drain, its main thread at the next stats flush. The agent
bounds both: a takeover whose handshake stalls fails for good with the reason; during the drain the new
agent's watchdog sends the Stats reply its Envoy waits for, and a replaced Envoy still running long past
its parent-shutdown time is killed by its own agent.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from agent import contract
from agent.decisions import HANDSHAKE_TIMEOUT_SECONDS, HUNG_PARENT_GRACE_SECONDS
from podharness.metrics import sample
from podharness.pod import Pod
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_hitless, assert_serving, start_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# Envoy retries a reply to an unbound child socket ten times, a second apart, then aborts.
UNANSWERED_REPLY_ABORT_S = 10
STOPPED_S = 4.0


def events(sidecars: SidecarPod, slot: str) -> list[dict[str, Any]]:
    lines = sidecars.container(slot).logs().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def admin_answers(sidecars: SidecarPod) -> bool:
    """Envoy's admin API answers within 1 s (it is served by the main thread)."""
    try:
        sidecars.pod.http_json(contract.ADMIN_PORT, "/server_info", timeout=1.0)
    except (OSError, RuntimeError):
        return False
    return True


def resume_after_spawn(sidecars: SidecarPod, pid: int, seconds: float) -> threading.Thread:
    """SIGCONT `pid` `seconds` after b's Envoy was spawned, so the stop surely covers its handshake."""

    def run() -> None:
        sidecars.wait_for("b spawned", lambda: sidecars.slot_phase("b") == "taking-over", timeout=120)
        time.sleep(seconds)
        os.kill(pid, signal.SIGCONT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_briefly_stopped_old_envoy_only_delays_the_takeover(sidecar_pod: SidecarPod) -> None:
    old = sidecar_pod.envoy_pids("a")
    load = start_load(sidecar_pod, request_timeout_s=60)
    try:
        time.sleep(0.5)
        os.kill(old[0], signal.SIGSTOP)
        resumer = resume_after_spawn(sidecar_pod, old[0], STOPPED_S)
        sidecar_pod.stop("b")
        started = time.monotonic()
        sidecar_pod.start_sidecar("b")
        rc, out = sidecar_pod.post_start("b")
        took = time.monotonic() - started
        resumer.join(timeout=60)
        assert rc == 0, out
        assert_serving(sidecar_pod, "b", 1)
        print(f"takeover with the old Envoy stopped {STOPPED_S}s into it: {took:.1f}s")
        sidecar_pod.wait_for("a retired", lambda: sidecar_pod.slot_phase("a") == "retired", timeout=60)
    finally:
        summary = load.stop()
    print(summary)
    assert summary["failed"] == 0, summary["failures"]
    assert summary["max_ms"] >= STOPPED_S * 1000, "requests waited for the stopped Envoy"
    assert_hitless(load, upgrades=1)


def test_a_hung_old_envoy_fails_the_takeover_in_bounded_time_and_keeps_serving(
    sidecar_pod: SidecarPod,
) -> None:
    old = sidecar_pod.envoy_pids("a")
    os.kill(old[0], signal.SIGSTOP)
    sidecar_pod.stop("b")
    started = time.monotonic()
    sidecar_pod.start_sidecar("b")
    rc, out = sidecar_pod.post_start("b")
    took = time.monotonic() - started
    print(f"postStart of b failed after {took:.1f}s: {out}")
    assert rc == 0 and "phase failed" in out and "slot a serves on" in out, out  # agent/hook.py
    assert "did not answer the hot-restart handshake" in out
    assert took < HANDSHAKE_TIMEOUT_SECONDS + 30, "bounded by the handshake timeout plus the agent's start"
    status = sidecar_pod.status("b")
    assert (status["phase"], status["role"]) == ("failed", "standby")
    assert sample(sidecar_pod.metrics("b"), "hotupgrade_agent_failures_total", {"reason": "parent_hung"}) == 1
    assert sidecar_pod.envoy_pids("b") == [], "the stalled child is killed"
    assert sidecar_pod.state()["active_slot"] == "a"

    os.kill(old[0], signal.SIGCONT)  # the hang ends: the old Envoy answers the dead child's request
    load = start_load(sidecar_pod)
    try:
        time.sleep(UNANSWERED_REPLY_ABORT_S + 4)
        assert sidecar_pod.envoy_pids("a") == old, "the old Envoy did not abort on its unanswered reply"
        swallowed = [e for e in events(sidecar_pod, "b") if e["event"] == "child-stand-in-message"]
        assert swallowed and swallowed[0]["message"].startswith("swallowed"), swallowed
        assert_serving(sidecar_pod, "a", 0, admin=False)  # ShutdownAdmin closed its admin API for good
        assert sidecar_pod.stop("b") == 0  # the controller rolls b back
        time.sleep(1)
        assert sidecar_pod.envoy_pids("a") == old
    finally:
        summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=0)  # the take-over failed: the old Envoy serves on


def test_an_old_envoy_hung_mid_drain_is_ended_and_the_new_one_unblocked(pod: Pod) -> None:
    # Past the first stats flush (every 5 s), so the new Envoy's main thread waits on the hung parent.
    parent_shutdown = 8
    sidecars = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=parent_shutdown)
    sidecars.start_pod()
    sidecars.stop("b")
    sidecars.start_sidecar("b")
    rc, out = sidecars.post_start("b")
    assert rc == 0, out
    old = sidecars.envoy_pids("a")
    os.kill(old[0], signal.SIGSTOP)  # its connections hang with it: only load started after is counted
    stopped = time.monotonic()
    load = start_load(sidecars)
    try:
        sidecars.wait_for(
            "b's main thread stuck on the stopped parent",
            lambda: not admin_answers(sidecars),
            timeout=parent_shutdown,
        )
        sidecars.wait_for(
            "a retired",
            lambda: sidecars.slot_phase("a") == "retired",
            timeout=parent_shutdown + HUNG_PARENT_GRACE_SECONDS + 30,
        )
        print(f"old Envoy hung mid-drain retired {time.monotonic() - stopped:.1f}s after its stop")
        # b records a's Envoy gone as soon as its socket is (its own admin answers: unblocked), a's agent
        # records why a moment later.
        sidecars.wait_for(
            "a's agent recorded its hung Envoy",
            lambda: "hung past its parent-shutdown time" in (sidecars.state()["slots"]["a"]["error"] or ""),
            timeout=10,
        )
        assert sidecars.envoy_pids("a") == []
        assert sample(sidecars.metrics("a"), "hotupgrade_agent_failures_total", {"reason": "hung"}) == 1
        # b's main thread waited for the stopped parent's Stats reply; its watchdog sent one long before the
        # parent was killed (docs/contract.md "A stalled child"), so no stand-in was needed for it.
        unblocked = [e for e in events(sidecars, "b") if e["event"] == "child-stalled"]
        assert unblocked and unblocked[0]["action"] == "unblock" and unblocked[0]["live"], unblocked
        assert not [e for e in events(sidecars, "b") if e["event"] == "stand-in-bound"]
        print(f"new Envoy unblocked after {unblocked[0]['silent_seconds']}s of silence")
        assert_serving(sidecars, "b", 1)  # its admin API answers: the main thread runs again
    finally:
        summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=1)  # the hung old Envoy, ended
