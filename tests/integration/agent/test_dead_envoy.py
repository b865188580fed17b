"""The old Envoy already dead when the upgrade starts (issue 12, scenario 5).

The old container is OOM-killed between the user's annotation and the controller's swap, so the slot
the controller asks finds no Envoy to take over from. The pod must not stay without a proxy: the new
slot starts a fresh epoch 0 (the gap is measured from the kill), the state and status say so, and the
old container, restarted by the kubelet with the old image, stands by instead of taking over again.
A variant kills only the old Envoy: its agent restarts it or the new slot starts fresh, whichever gets
the run-dir lock first; either way the new slot ends up serving and the old one out of the way.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from podharness.load import LoadGenerator
from podharness.metrics import sample
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_serving, start_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# What this 2-core shared machine needs to start an agent and its Envoy from a cold container, with room.
GAP_BUDGET_S = 30.0


def gap_after(load: LoadGenerator, killed_at: float) -> float:
    """Seconds from the kill to the last HTTP request that failed (0 when none failed)."""
    times = [f.at for f in load.record.failures if f.kind != "tcp" and f.at >= killed_at]
    return max(times, default=killed_at) - killed_at


def test_old_container_dead_before_the_swap_new_slot_starts_fresh(sidecar_pod: SidecarPod) -> None:
    load = start_load(sidecar_pod, request_timeout_s=5)
    time.sleep(1)
    killed_at = time.time()
    sidecar_pod.container("a").kill()  # OOM kill of the whole old container: agent and Envoy
    sidecar_pod.stop("b")
    sidecar_pod.start_sidecar("b")  # the controller's swap, already decided
    rc, out = sidecar_pod.post_start("b")
    live_at = time.time()
    assert rc == 0, out
    time.sleep(2)
    summary = load.stop()
    gap = gap_after(load, killed_at)
    print(
        f"kill -> b serving: {live_at - killed_at:.1f}s; failed requests {summary['failed']}, gap {gap:.1f}s"
    )

    assert_serving(sidecar_pod, "b", 0)
    state = sidecar_pod.state()
    assert state["slots"]["a"]["phase"] == "retired"
    assert state["slots"]["a"]["error"] == "its Envoy was gone when b started"
    assert state["slots"]["a"]["replaced_by_epoch"] == 0
    live = [e for e in state["history"] if e["event"] == "envoy-live"][-1]
    assert (live["slot"], live["epoch"]) == ("b", 0)
    assert live["detail"].startswith("fresh start: no Envoy of the pod was live")
    metrics = sidecar_pod.metrics("b")
    assert sample(metrics, "hotupgrade_agent_fresh_starts_total") == 1
    assert sample(metrics, "hotupgrade_agent_takeovers_total") == 0
    assert summary["failed"] > 0, "nothing served between the kill and b's start: the load must see it"
    assert gap < GAP_BUDGET_S

    # The kubelet restarts the killed container with the image it still has: it must not take over.
    sidecar_pod.start_sidecar("a")
    rc, out = sidecar_pod.post_start("a")
    assert rc == 0, out
    status = sidecar_pod.status("a")
    assert (status["role"], status["phase"]) == ("retired", "retired")
    assert sidecar_pod.envoy_pids("a") == []
    assert_serving(sidecar_pod, "b", 0)


def test_old_envoy_dead_before_the_swap_ends_with_the_new_slot_serving(sidecar_pod: SidecarPod) -> None:
    load = start_load(sidecar_pod, request_timeout_s=5)
    time.sleep(1)
    killed_at = time.time()
    old_agent = sidecar_pod.container("a").pid
    for pid in sidecar_pod.envoy_pids("a"):
        os.kill(pid, signal.SIGKILL)  # OOM kill of the old Envoy alone; its agent lives on
    sidecar_pod.stop("b")
    sidecar_pod.start_sidecar("b")
    rc, out = sidecar_pod.post_start("b")
    assert rc == 0, out
    status = sidecar_pod.status("b")
    assert (status["role"], status["phase"]) == ("active", "serving")
    epoch = status["epoch"]
    assert epoch in (0, 1), "fresh (b got the lock first) or a takeover of a's restarted Envoy"
    sidecar_pod.wait_for(
        "a out of the way",
        lambda: sidecar_pod.slot_phase("a") == "retired" and sidecar_pod.envoy_pids("a") == [],
        timeout=60,
    )
    time.sleep(1)
    summary = load.stop()
    gap = gap_after(load, killed_at)
    print(f"b serving at epoch {epoch}; failed requests {summary['failed']}, gap {gap:.1f}s")
    assert sidecar_pod.container("a").pid == old_agent, "the old agent never restarted"
    assert sidecar_pod.status("a")["role"] == "retired"
    assert_serving(sidecar_pod, "b", epoch)
    assert gap < GAP_BUDGET_S
