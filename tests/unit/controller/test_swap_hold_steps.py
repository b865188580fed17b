"""How the step machine meets a release's swap hold (`hotupgrade.io/swap-hold`): the checks and the
pre-pull go on, the standby's image change waits (no deadline, the record says so once) until the hold is
lifted; a hold on another image holds nothing. The planner's side: tests/unit/controller/test_rollout.py."""

from typing import Any

from controller.actions import PatchStandbyImage, WaitFor
from controller.keys import ANNOTATION_SWAP_HOLD
from controller.observed import PrePullView
from controller.patches import lift_patch, target_patch
from controller.record import SWAP_WAIT, Phase
from controller.rollout import at_swap, pod_facts
from controller.steps import next_step
from tests.unit.controller.podfixtures import NEW, SERVING_A, observe, raw_pod
from tests.unit.controller.test_steps import POLICY, PRE_PULL, apply, pre_pulling

PULLED = PrePullView(exists=True, phase="Succeeded")
HOLD_PATH = "/metadata/annotations/hotupgrade.io~1swap-hold"


def held(pod: dict[str, Any], image: str = NEW) -> dict[str, Any]:
    pod["metadata"]["annotations"][ANNOTATION_SWAP_HOLD] = image
    return pod


def lifted(pod: dict[str, Any]) -> dict[str, Any]:
    del pod["metadata"]["annotations"][ANNOTATION_SWAP_HOLD]
    return pod


def test_a_pre_pulled_upgrade_waits_at_the_swap_until_the_hold_is_lifted() -> None:
    pod = held(pre_pulling())
    wait = next_step(observe(pod, after=8, pre_pull=PULLED), PRE_PULL)
    assert isinstance(wait, WaitFor) and wait.record is not None and wait.event is None
    assert wait.record.phase is Phase.PRE_PULLING, "nothing changed: the standby still runs the empty image"
    assert wait.record.message == f"{SWAP_WAIT} to {NEW} (maxUnavailable)"
    waiting = apply(pod, wait)
    assert at_swap(pod_facts(waiting)), "the planner sees it waiting at the swap"
    again = next_step(observe(waiting, after=9, pre_pull=PULLED), PRE_PULL)
    assert isinstance(again, WaitFor) and again.record is None, "the same wait: no write"
    # No deadline (the pre-pull's step timeout is 60 s): an hour later it still waits.
    late = next_step(observe(waiting, after=3600, pre_pull=PULLED), PRE_PULL)
    assert isinstance(late, WaitFor) and late.record is None
    swap = next_step(observe(lifted(waiting), after=3601, pre_pull=PULLED), PRE_PULL)
    assert isinstance(swap, PatchStandbyImage) and swap.image == NEW
    assert swap.record.phase is Phase.TAKING_OVER


def test_a_hold_on_another_image_holds_nothing() -> None:
    pod = held(pre_pulling(), "registry.local/hotupgrade-sidecar:3")
    assert isinstance(next_step(observe(pod, after=8, pre_pull=PULLED), PRE_PULL), PatchStandbyImage)


def test_without_pre_pull_the_upgrade_waits_pending_and_starts_once_lifted() -> None:
    pod = held(raw_pod())
    wait = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(wait, WaitFor) and wait.record is not None and wait.event is None
    assert wait.record.phase is Phase.PENDING and wait.record.message.startswith(SWAP_WAIT)
    waiting = apply(pod, wait)
    # A long hold restarts the checks' clock, as a budget's wait does: a pod briefly not Ready an hour
    # later waits again rather than failing the checks' 60 s at once.
    waiting["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    not_ready = next_step(observe(waiting, agents=SERVING_A, after=3600), POLICY)
    assert isinstance(not_ready, WaitFor) and "pod is not Ready" in not_ready.reason
    waiting["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    swap = next_step(observe(lifted(waiting), agents=SERVING_A, after=3601), POLICY)
    assert isinstance(swap, PatchStandbyImage) and swap.event is not None
    assert swap.event.reason == "UpgradeStarted"


def test_the_release_patches_set_and_lift_the_hold_on_the_pod_as_planned() -> None:
    assert target_patch(NEW, "41", hold=True)[-1] == {"op": "add", "path": HOLD_PATH, "value": NEW}
    assert target_patch(NEW, "41", drop_hold=True)[-1] == {"op": "remove", "path": HOLD_PATH}
    assert len(target_patch(NEW, "41")) == 2
    assert lift_patch(NEW, "42") == [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "test", "path": HOLD_PATH, "value": NEW},
        {"op": "remove", "path": HOLD_PATH},
    ]
