"""A replaced slot never takes the listeners back unless the controller asks (issue 10, case
`state-when-old-slot-restarts.json`).

After slot b took over, the old container a still runs the old image until the controller resets it to
the empty image. If a restarts before that (its agent crashed or was OOM-killed, so its Envoy died with
it), the kubelet starts the old image again: its agent must stand by, its postStart hook must pass (no
crash loop), and b's Envoy keeps the listeners. The controller's reset (SIGTERM to a's agent) releases
the slot, and the next image change of a is a request it serves.
"""

from __future__ import annotations

import time

import pytest

from podharness.pod import Pod
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_hitless, assert_serving, start_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DRAIN_SECONDS = 2
# Long enough to restart the old container while its Envoy would still be draining.
PARENT_SHUTDOWN_SECONDS = 8


@pytest.mark.parametrize("when", ["mid-drain", "after-drain"])
def test_a_restarted_replaced_container_stands_by_until_the_controller_asks(pod: Pod, when: str) -> None:
    sidecars = SidecarPod(pod, drain_seconds=DRAIN_SECONDS, parent_shutdown_seconds=PARENT_SHUTDOWN_SECONDS)
    sidecars.start_pod()
    sidecars.stop("b")
    sidecars.start_sidecar("b")  # the controller set b to the target: a requested take-over
    rc, out = sidecars.post_start("b")
    assert rc == 0, out
    if when == "after-drain":
        sidecars.wait_for("a retired", lambda: sidecars.slot_phase("a") == "retired", timeout=60)
    else:
        assert sidecars.slot_phase("a") == "draining"

    # OOM kill of the old container: SIGKILL to its PID 1 takes its Envoy along; the kubelet restarts
    # it with the image it still has (the controller has not reset it yet).
    sidecars.container("a").kill()
    load = start_load(sidecars)
    try:
        sidecars.start_sidecar("a")
        rc, out = sidecars.post_start("a")
        assert rc == 0, f"a standing-by container must not fail its postStart hook: {out}"
        time.sleep(2)  # room for a wrong take-over to happen
        status = sidecars.status("a")
        assert (status["role"], status["phase"], status["epoch"]) == ("retired", "retired", None)
        assert "replaced by epoch 1" in (status["last_error"] or "")
        assert sidecars.envoy_pids("a") == [], "a replaced slot never starts Envoy unasked"
        assert_serving(sidecars, "b", 1)
        sidecars.wait_for("a retired", lambda: sidecars.slot_phase("a") == "retired", timeout=30)
        events = [e["event"] for e in sidecars.state()["history"]]
        assert "standing-by" in events

        # The controller resets a to the empty image (SIGTERM to its agent): that releases the slot.
        assert sidecars.stop("a") == 0
        assert sidecars.state()["slots"]["a"]["released_at"] is not None
        sidecars.start_empty("a")
        assert sidecars.post_start("a")[0] == 0
        assert_serving(sidecars, "b", 1)

        sidecars.upgrade("a")  # the next image change of a is a request: it takes over
        assert_serving(sidecars, "a", 2)
        assert sidecars.state()["slots"]["b"]["replaced_by_epoch"] == 2
    finally:
        summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=1)  # the last one: b's Envoy; a's was killed before the load
