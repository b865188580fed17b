"""The take-over fence with real agents and a real Envoy (docs/contract.md "The take-over fence").

The release e2e found the race it closes: the controller rolled back b's image change while b's new agent
was taking over; b's Envoy went LIVE, the rollback killed it, a's Envoy had drained: no Envoy, pod Ready.
Here the controller's own client (controller/agents.py) asks a's agent over the pod IP, as the
controller does, so both sides of the contract are exercised:

- a fence recorded before b's agent reaches the run-dir lock: b never spawns an Envoy, not even after the
  kubelet restarts its container, and a's Envoy serves on; lifted, the next upgrade of b goes through;
- a fence asked after b's take-over began is never recorded (503 while b holds the lock, 409 once it
  is LIVE), and the take-over completes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from controller.agents import AgentClient, FenceAnswer
from podharness.metrics import sample
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_hitless, assert_serving, start_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = "b:1@2026-11-30T01:51:37Z"


def fence(sidecars: SidecarPod, *, lift: bool = False) -> FenceAnswer:
    """What a's agent answers the controller's fence (or lift) of b's take-over."""
    return AgentClient(timeout=5.0).fence(sidecars.pod.ip, "a", slot="b", token=TOKEN, lift=lift)


@contextmanager
def under_load(sidecars: SidecarPod, *, upgrades: int) -> Iterator[None]:
    """HTTP/1.1, HTTP/2 and TCP load through the block, which completes `upgrades`; after it, hitless."""
    load = start_load(sidecars)
    try:
        yield
    finally:
        summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=upgrades)


def history(sidecars: SidecarPod) -> list[tuple[str, str]]:
    return [(e["slot"], e["event"]) for e in sidecars.state()["history"]]


def test_a_fenced_take_over_never_spawns_envoy_and_the_old_envoy_serves_on(sidecar_pod: SidecarPod) -> None:
    with under_load(sidecar_pod, upgrades=1):  # the fenced take-overs fail; the upgrade at the end
        sidecar_pod.stop("b")  # the kubelet stops the empty standby for the controller's swap ...
        answer = fence(sidecar_pod)  # ... and the rollback's fence gets the lock before b's agent
        assert answer.code == 200, answer
        recorded = json.loads(answer.detail)["fence"]
        assert (recorded["slot"], recorded["token"], recorded["parent_epoch"]) == ("b", TOKEN, 0)
        again = fence(sidecar_pod)
        assert again.code == 200 and json.loads(again.detail)["fence"] == recorded, "idempotent"
        assert sidecar_pod.status("a")["fence"] == recorded

        for start in (1, 2):  # a fenced slot stays fenced if its container starts again
            if start == 2:
                sidecar_pod.stop("b")
            sidecar_pod.start_sidecar("b")
            rc, out = sidecar_pod.post_start("b")
            # The hook passes while a serves (agent/hook.py): the kubelet keeps the failed container up
            # until the rollback instead of killing it into its crash-loop back-off.
            assert rc == 0, f"a fenced slot's postStart hook passes while a serves (start {start}): {out}"
            assert "fenced:" in out and "slot a serves on" in out, out
            status = sidecar_pod.status("b")
            assert (status["phase"], status["epoch"]) == ("failed", None), status
            assert (status["last_error"] or "").startswith("fenced:") and TOKEN in status["last_error"]
            assert sidecar_pod.envoy_pids("b") == [], "a fenced slot never spawns Envoy"
            assert sidecar_pod.state()["slots"]["b"]["phase"] == "failed"
            fenced = sample(sidecar_pod.metrics("b"), "hotupgrade_agent_failures_total", {"reason": "fenced"})
            assert fenced == 1
            assert_serving(sidecar_pod, "a", 0)
        assert ("a", "fenced") in history(sidecar_pod)
        assert ("b", "envoy-starting") not in history(sidecar_pod)

        # The rollback lands: b runs the empty image again; a's Envoy served throughout.
        assert sidecar_pod.stop("b") == 0
        sidecar_pod.start_empty("b")
        assert sidecar_pod.post_start("b")[0] == 0
        assert_serving(sidecar_pod, "a", 0)

        # A later upgrade of b, to the same image: the controller lifts the fence before the swap.
        lifted = fence(sidecar_pod, lift=True)
        assert (lifted.code, json.loads(lifted.detail)) == (200, {"lifted": True})
        assert sidecar_pod.status("a")["fence"] is None
        assert ("a", "fence-lifted") in history(sidecar_pod)
        sidecar_pod.upgrade("b")
        assert_serving(sidecar_pod, "b", 1)


def test_a_fence_after_the_take_over_began_is_refused_and_the_take_over_completes(
    sidecar_pod: SidecarPod,
) -> None:
    with under_load(sidecar_pod, upgrades=1):
        sidecar_pod.stop("b")
        sidecar_pod.start_sidecar("b")  # the swap: b's agent takes the lock and begins its take-over
        sidecar_pod.wait_for(
            "b taking over", lambda: sidecar_pod.status("b")["phase"] in ("taking-over", "serving"), 60
        )
        answers: list[FenceAnswer] = []
        deadline = time.monotonic() + 90
        while not answers or answers[-1].code != 409:  # the controller asks again on every look
            assert time.monotonic() < deadline, answers
            answers.append(fence(sidecar_pod))
        assert {a.code for a in answers} <= {409, 503}, answers
        refused = json.loads(answers[-1].detail)["refused"]
        assert "slot b" in refused and ("began its take-over" in refused or "active slot" in refused)

        rc, out = sidecar_pod.post_start("b")
        assert rc == 0, out
        assert_serving(sidecar_pod, "b", 1)
        assert sidecar_pod.status("a")["fence"] is None and sidecar_pod.status("b")["fence"] is None
        assert ("a", "fenced") not in history(sidecar_pod)
        sidecar_pod.wait_for("a retired", lambda: sidecar_pod.slot_phase("a") == "retired", 30)
        assert_serving(sidecar_pod, "b", 1)
