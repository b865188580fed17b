"""How the step machine meets a release's swap hold (`hotupgrade.io/swap-hold`): the checks and the
pre-pull go on, the standby's image change waits (no deadline, the record says so once) until the hold is
lifted; a hold on another image holds nothing; an upgrade its release withdraws before the swap is dropped,
never failed. The planner's side: tests/unit/controller/test_rollout.py."""

from typing import Any

import jsonpatch

from controller.actions import Fail, Noop, PatchStandbyImage, WaitFor, Withdraw
from controller.keys import ANNOTATION_SWAP_HOLD, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE
from controller.observed import PrePullView
from controller.patches import JSONPatch, lift_patch, release_withdraw_patch, target_patch, withdraw_patch
from controller.prepull import pre_pull_pod_name
from controller.record import SWAP_WAIT, Phase, Reason
from controller.rollout import PodState, at_swap, plan_release, pod_facts
from controller.steps import next_step
from releaseapi.release import IntOrPercent, Release, ReleaseSpec, ReleaseStatus, Strategy
from releaseapi.selector import LabelSelector
from tests.unit.controller.podfixtures import NEW, OLD, SERVING_A, T0, observe, raw_pod
from tests.unit.controller.test_steps import POLICY, PRE_PULL, annotate, apply, pre_pulling

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


def test_a_pre_pull_pod_gone_while_held_fails_nothing() -> None:
    # Pod garbage collection, or a hand, deletes the Succeeded pre-pull pod during a long hold.
    waiting = apply(
        held(pre_pulling()), next_step(observe(held(pre_pulling()), after=8, pre_pull=PULLED), PRE_PULL)
    )
    gone = PrePullView(exists=False)
    late = next_step(observe(waiting, after=3600, pre_pull=gone), PRE_PULL)
    assert isinstance(late, WaitFor) and late.record is None, late  # was PrePullTimeout past 60 s
    swap = next_step(observe(lifted(waiting), after=3601, pre_pull=gone), PRE_PULL)
    assert isinstance(swap, PatchStandbyImage) and swap.image == NEW
    # Never pulled (no hold message yet): a missing pre-pull pod is still created, then timed out.
    fresh = pre_pulling()
    assert not isinstance(next_step(observe(fresh, after=8, pre_pull=gone), PRE_PULL), PatchStandbyImage)
    timed_out = next_step(observe(fresh, after=3600, pre_pull=gone), PRE_PULL)
    assert isinstance(timed_out, Fail) and timed_out.record.reason is Reason.PRE_PULL_TIMEOUT


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


# --- withdrawn by the release (the revert d60ddd6's second fault) ---------------------------------------


def patched(pod: dict[str, Any], ops: JSONPatch) -> dict[str, Any]:
    """The pod after the API server applied `ops` (pinned to its resourceVersion, which it bumps)."""
    assert ops[0]["value"] == pod["metadata"]["resourceVersion"]
    out: dict[str, Any] = jsonpatch.apply_patch(pod, ops[1:])
    out["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
    return out


def rolled_back(previous: str = OLD) -> Release:
    """The release edited back to the image its pods still run (status.previousImages[0])."""
    spec = ReleaseSpec(
        selector=LabelSelector(()),
        image=previous,
        strategy=Strategy(max_unavailable=IntOrPercent(2), max_failures=2),
    )
    return Release(
        name="web", generation=3, spec=spec, status=ReleaseStatus(image=NEW, previous_images=(OLD,))
    )


def waiting_at_the_swap() -> dict[str, Any]:
    pod = held(pre_pulling())
    wait = next_step(observe(pod, after=8, pre_pull=PULLED), PRE_PULL)
    assert isinstance(wait, WaitFor)
    return apply(pod, wait)


def test_rolled_back_onto_the_running_image_a_held_upgrade_is_dropped_not_failed() -> None:
    """spec.image edited back to OLD while the pod waits at its swap to NEW: the release withdraws it
    (target removed, the hold kept as the step machine's cue), the step machine drops record and hold and
    deletes the pre-pull pod. No Failed record (which the release would count), nothing to upgrade."""
    pod = waiting_at_the_swap()
    release = rolled_back()
    plan = plan_release(release, [pod_facts(pod)], now=T0)
    assert (plan.starts, plan.lifts) == ((), ())
    (withdrawal,) = plan.withdrawals
    assert (withdrawal.image, withdrawal.target, withdrawal.hold) == (NEW, True, False)
    pod = patched(
        pod,
        release_withdraw_patch(NEW, pod["metadata"]["resourceVersion"], target=True, hold=False),
    )
    assert ANNOTATION_TARGET_IMAGE not in pod["metadata"]["annotations"]
    drop = next_step(observe(pod, after=20, pre_pull=PULLED), PRE_PULL)
    assert isinstance(drop, Withdraw) and drop.image == NEW, drop
    assert drop.delete_pre_pull == pre_pull_pod_name(pod["metadata"]["uid"], NEW)
    pod = patched(pod, withdraw_patch(drop, pod["metadata"]["resourceVersion"]))
    annotations = pod["metadata"]["annotations"]
    assert ANNOTATION_UPGRADE not in annotations and ANNOTATION_SWAP_HOLD not in annotations
    assert isinstance(next_step(observe(pod, after=21), PRE_PULL), Noop)
    after = plan_release(release, [pod_facts(pod)], now=T0)
    assert after.pods == {"shop/web-1": PodState.UPDATED}
    assert (after.status.failed, after.starts, after.withdrawals) == (0, (), ())


def test_a_held_pending_upgrade_is_dropped_too_and_the_planner_never_retargets_it_onto_its_image() -> None:
    pod = held(raw_pod())
    wait = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(wait, WaitFor) and wait.record is not None and wait.record.phase is Phase.PENDING
    pod = apply(pod, wait)
    (withdrawal,) = plan_release(rolled_back(), [pod_facts(pod)], now=T0).withdrawals
    # Before the fix the release set the target to OLD: the step machine then failed it.
    retargeted = next_step(observe(annotate(pod, target=OLD), agents=SERVING_A, after=2), POLICY)
    assert isinstance(retargeted, Withdraw), "a hold on the superseded image drops, never fails"
    pod = patched(
        pod, release_withdraw_patch(NEW, pod["metadata"]["resourceVersion"], target=True, hold=False)
    )
    drop = next_step(observe(pod, agents=SERVING_A, after=2), POLICY)
    assert isinstance(drop, Withdraw) and drop.delete_pre_pull is None
    assert withdrawal.hold is False  # the hold stays for the step machine: its cue


def test_a_target_removed_by_hand_without_a_hold_still_aborts_as_before() -> None:
    pod = apply(raw_pod(), next_step(observe(raw_pod()), POLICY))  # Pending: waiting for the agents
    aborted = next_step(observe(annotate(pod, target=None), agents=SERVING_A), POLICY)
    assert isinstance(aborted, Fail) and aborted.record.reason is Reason.ABORTED


def test_the_release_withdraws_a_hold_no_record_names_with_its_target() -> None:
    path = "/metadata/annotations/hotupgrade.io~1target-image"
    assert release_withdraw_patch(NEW, "7", target=True, hold=True) == [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"},
        {"op": "test", "path": path, "value": NEW},
        {"op": "remove", "path": path},
        {"op": "test", "path": HOLD_PATH, "value": NEW},
        {"op": "remove", "path": HOLD_PATH},
    ]
    pod = held(raw_pod())  # target and hold set, the step machine not yet there
    pod = patched(
        pod, release_withdraw_patch(NEW, pod["metadata"]["resourceVersion"], target=True, hold=True)
    )
    assert isinstance(next_step(observe(pod), POLICY), Noop)
