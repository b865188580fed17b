"""next_step: pod state in, next action out, for every branch of the step machine.

In-flight states are reached by running the machine itself and applying its own JSON patches with
jsonpatch (as the API server would), so the patches are exercised too.
"""

from dataclasses import replace
from typing import Any

import jsonpatch
import pytest

from controller.actions import (
    Action,
    Complete,
    CreatePrePullPod,
    Fail,
    Noop,
    Observe,
    PatchStandbyImage,
    ResetOldToEmpty,
    RollBack,
    SetImage,
    WaitFor,
)
from controller.events import due, posted
from controller.keys import (
    ANNOTATION_ABORT,
    ANNOTATION_RETRY,
    ANNOTATION_STATUS,
    ANNOTATION_TARGET_IMAGE,
    ANNOTATION_UPGRADE,
)
from controller.observed import PrePullView
from controller.patches import patch_for
from controller.policy import ImageAllowlist, Policy
from controller.prepull import pre_pull_pod_name
from controller.record import Phase, Reason, UpgradeRecord, parse_record
from controller.steps import next_step, status_after_take_over
from tests.unit.controller.podfixtures import (
    EMPTY,
    NEW,
    OLD,
    SERVING_A,
    STATUS,
    T0,
    agent,
    observe,
    raw_pod,
    set_container,
    unreachable,
    upgrade_record,
)
from webhook.injection_status import parse_status

POLICY = Policy(step_timeout=60, drain_grace=30, poll_interval=1, pre_pull=False)
PRE_PULL = replace(POLICY, pre_pull=True)

# Agents as they report during an upgrade a -> b.
TAKEN_OVER = {
    "a": agent("a", "retired", "draining", active="b", slots={"a": "draining", "b": "serving"}),
    "b": agent("b", "active", "serving", active="b", slots={"a": "draining", "b": "serving"}, epoch=1),
}
DRAINED = {
    "a": unreachable("a"),
    "b": agent("b", "active", "serving", active="b", slots={"a": "retired", "b": "serving"}, epoch=1),
}


def apply(pod: dict[str, Any], action: Action | Observe) -> dict[str, Any]:
    """The pod after the API server applied the action's patch (resourceVersion bumped)."""
    assert isinstance(action, SetImage | WaitFor | Fail | Complete | CreatePrePullPod)
    ops = patch_for(action, pod["metadata"]["resourceVersion"])
    out: dict[str, Any] = jsonpatch.apply_patch(pod, ops)
    out["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
    return out


def record_of(pod: dict[str, Any]) -> UpgradeRecord:
    return parse_record(pod["metadata"]["annotations"][ANNOTATION_UPGRADE])


def annotate(pod: dict[str, Any], **annotations: str | None) -> dict[str, Any]:
    out: dict[str, Any] = jsonpatch.apply_patch(pod, [])
    keys = {"target": ANNOTATION_TARGET_IMAGE, "retry": ANNOTATION_RETRY, "abort": ANNOTATION_ABORT}
    for short, value in annotations.items():
        if value is None:
            out["metadata"]["annotations"].pop(keys[short], None)
        else:
            out["metadata"]["annotations"][keys[short]] = value
    return out


def taking_over(policy: Policy = POLICY) -> dict[str, Any]:
    """A pod whose standby was just set to NEW (phase TakingOver), kubelet not yet reacted."""
    pod = raw_pod()
    action = next_step(observe(pod, agents=SERVING_A), policy)
    assert isinstance(action, PatchStandbyImage)
    return apply(pod, action)


def swapped_in(pod: dict[str, Any], **status: Any) -> dict[str, Any]:
    """The kubelet restarted the standby on NEW with a new container id."""
    return set_container(pod, "hotupgrade-b", cid="containerd://b2", restarts=1, **status)


def draining() -> dict[str, Any]:
    pod = swapped_in(taking_over())
    action = next_step(observe(pod, agents=TAKEN_OVER, after=5), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    return apply(pod, action)


def resetting() -> dict[str, Any]:
    pod = draining()
    action = next_step(observe(pod, agents=DRAINED, after=20), POLICY)
    assert isinstance(action, ResetOldToEmpty)
    return apply(pod, action)


def rolling_back() -> dict[str, Any]:
    pod = swapped_in(taking_over(), state="waiting", reason="CrashLoopBackOff", message="back-off")
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack)
    return apply(pod, action)


# --- not our pod / nothing to do ------------------------------------------------------------


def test_terminating_pod_is_left_alone() -> None:
    pod = raw_pod()
    pod["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:00Z"
    assert isinstance(next_step(observe(pod, agents=SERVING_A), POLICY), Noop)


def test_pod_without_status_annotation_is_not_ours() -> None:
    assert next_step(observe(raw_pod(status=None)), POLICY) == Noop("pod is not injected")


def test_no_target_is_noop() -> None:
    assert next_step(observe(raw_pod(target=None)), POLICY) == Noop("no target image")


def test_target_equal_to_active_image_is_reported_once_not_ignored() -> None:
    pod = raw_pod(target=OLD)
    action = next_step(observe(pod, agents=None), POLICY)
    assert isinstance(action, Fail), "a re-pushed tag must not pass in silence (no record, no Event)"
    assert action.record.reason is Reason.ALREADY_RUNNING and action.record.phase is Phase.FAILED
    assert action.event.type == "Warning" and action.event.reason == "TargetAlreadyRunning"
    assert f"{OLD} is already running in hotupgrade-a" in action.event.message
    assert "digest" in action.event.message, "the user is told what to do instead"
    assert all("/spec/" not in op["path"] for op in patch_for(action, "1")), "nothing is swapped"
    again = next_step(observe(apply(pod, action), agents=None, after=5), POLICY)
    assert isinstance(again, Noop), "told once, not on every reconcile"


def test_invalid_status_without_target_is_noop() -> None:
    pod = raw_pod(target=None)
    pod["metadata"]["annotations"][ANNOTATION_STATUS] = "{not json"
    assert isinstance(next_step(observe(pod), POLICY), Noop)


def test_invalid_status_with_target_fails_once() -> None:
    pod = raw_pod()
    pod["metadata"]["annotations"][ANNOTATION_STATUS] = '{"version": 1}'
    action = next_step(observe(pod), POLICY)
    assert isinstance(action, Fail)
    assert action.record.reason is Reason.INVALID_STATUS and action.record.phase is Phase.FAILED
    assert action.event.type == "Warning"
    again = next_step(observe(apply(pod, action), after=10), POLICY)
    assert isinstance(again, Noop), "a recorded failure must not be re-recorded (no storm)"


# --- step 1: checks -------------------------------------------------------------------------


def test_start_patches_standby_with_test_op_and_records_taking_over() -> None:
    pod = raw_pod()
    action = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(action, PatchStandbyImage)
    assert (action.container, action.spec_path, action.expect_image, action.image) == (
        "hotupgrade-b",
        "/spec/containers/1",
        EMPTY,
        NEW,
    )
    record = action.record
    assert record.phase is Phase.TAKING_OVER
    assert (record.from_image, record.to_image, record.attempt) == (OLD, NEW, 1)
    assert (record.old_container, record.new_container, record.old_slot, record.new_slot) == (
        "hotupgrade-a",
        "hotupgrade-b",
        "a",
        "b",
    )
    assert record.standby_id_before == "containerd://b1" and record.standby_restarts_before == 0
    assert action.event is not None and action.event.reason == "UpgradeStarted"
    ops = patch_for(action, "1000")
    assert ops[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "1000"}
    assert {"op": "test", "path": "/spec/containers/1/image", "value": EMPTY} in ops
    assert ops.index({"op": "test", "path": "/spec/containers/1/image", "value": EMPTY}) < ops.index(
        {"op": "replace", "path": "/spec/containers/1/image", "value": NEW}
    )
    assert any(op["path"] == "/metadata/annotations/hotupgrade.io~1upgrade" for op in ops)


def test_stale_view_fails_the_test_op_instead_of_clobbering() -> None:
    pod = raw_pod()
    action = next_step(observe(pod, agents=SERVING_A), POLICY)
    someone_else = set_container(pod, "hotupgrade-b", image="registry.local/other:9")
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(someone_else, patch_for(action, "1000"))  # type: ignore[arg-type]


def test_target_outside_allowlist_fails_without_touching_the_pod() -> None:
    policy = replace(POLICY, allowlist=ImageAllowlist(prefixes=("registry.local/approved/",)))
    action = next_step(observe(raw_pod(), agents=SERVING_A), policy)
    assert isinstance(action, Fail) and action.record.reason is Reason.NOT_ALLOWED
    assert all("/spec/" not in op["path"] for op in patch_for(action, "1"))


def test_allowlist_regex_admits_target() -> None:
    policy = replace(POLICY, allowlist=ImageAllowlist(patterns=(r"registry\.local/hotupgrade-sidecar:\d+",)))
    assert isinstance(next_step(observe(raw_pod(), agents=SERVING_A), policy), PatchStandbyImage)


def test_missing_container_named_in_status_fails() -> None:
    pod = raw_pod()
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "hotupgrade-b"]
    action = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.INVALID_STATUS


def test_standby_not_on_empty_image_fails() -> None:
    pod = set_container(raw_pod(), "hotupgrade-b", image="registry.local/leftover:1")
    action = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.STANDBY_NOT_EMPTY


@pytest.mark.parametrize(
    ("pod", "agents", "expected"),
    [
        (raw_pod(ready=False), SERVING_A, "pod is not Ready"),
        (
            set_container(raw_pod(), "hotupgrade-b", cid=None, state="waiting"),
            SERVING_A,
            "standby container hotupgrade-b is not running",
        ),
        (raw_pod(), {"a": unreachable("a")}, "agent of active slot a unreachable (NewConnectionError)"),
        (raw_pod(), {}, "agent of active slot a unreachable (no answer)"),
        (raw_pod(), {"a": agent("a", "active", "starting")}, "agent of active slot a is active/starting"),
        (raw_pod(), {"a": agent("a", "active", "serving", active="b")}, "agent state says slot b is active"),
    ],
)
def test_unmet_precondition_waits_in_pending(pod: dict[str, Any], agents: Any, expected: str) -> None:
    action = next_step(observe(pod, agents=agents), POLICY)
    assert isinstance(action, WaitFor) and expected in action.reason
    assert action.record is not None and action.record.phase is Phase.PENDING
    pending = apply(pod, action)
    again = next_step(observe(pending, agents=agents, after=5), POLICY)
    assert isinstance(again, WaitFor) and again.record is None, "same wait: no rewrite"
    late = next_step(observe(pending, agents=agents, after=61), POLICY)
    assert isinstance(late, Fail) and late.record.reason is Reason.CHECKS_TIMEOUT


def test_pending_proceeds_once_checks_pass() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    pending["status"]["conditions"][0]["status"] = "True"
    action = next_step(observe(pending, agents=SERVING_A, after=10), POLICY)
    assert isinstance(action, PatchStandbyImage)
    assert action.record.started == T0 and action.record.attempt == 1


def test_pending_message_is_rewritten_when_the_reason_changes() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    pending["status"]["conditions"][0]["status"] = "True"
    action = next_step(observe(pending, agents={"a": unreachable("a")}, after=3), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.message.startswith("waiting: agent of active slot a unreachable")
    assert action.record.phase_since == T0, "the checks' timeout runs from the first wait"


def test_pending_superseded_by_new_target_starts_over() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    newer = annotate(pending, target="registry.local/hotupgrade-sidecar:3")
    action = next_step(observe(newer, agents=SERVING_A, after=10), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.to_image == "registry.local/hotupgrade-sidecar:3" and action.record.phase_since > T0


def test_pending_with_target_removed_is_aborted() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    action = next_step(observe(annotate(pending, target=None), after=3), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.ABORTED


def test_pending_abort_fails_without_touching_the_pod() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    action = next_step(observe(annotate(pending, abort="1"), agents=SERVING_A, after=3), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.ABORTED
    assert action.record.abort_token == "1"


# --- step 2: pre-pull -----------------------------------------------------------------------


def pre_pulling() -> dict[str, Any]:
    pod = raw_pod()
    action = next_step(observe(pod, agents=SERVING_A), PRE_PULL)
    assert isinstance(action, CreatePrePullPod)
    assert action.node_name == "node-1" and action.image == NEW
    assert action.pod_name == pre_pull_pod_name(pod["metadata"]["uid"], NEW)
    assert action.record is not None and action.record.phase is Phase.PRE_PULLING
    assert action.event is not None and action.event.reason == "UpgradeStarted"
    return apply(pod, action)


def test_pre_pull_success_patches_standby_and_cleans_up() -> None:
    pod = pre_pulling()
    action = next_step(observe(pod, after=8, pre_pull=PrePullView(exists=True, phase="Succeeded")), PRE_PULL)
    assert isinstance(action, PatchStandbyImage)
    assert action.delete_pre_pull == pre_pull_pod_name(pod["metadata"]["uid"], NEW)
    assert action.record.pre_pull_pod is None and action.record.phase is Phase.TAKING_OVER


@pytest.mark.parametrize(
    "view",
    [
        PrePullView(exists=True, phase="Failed", message="exit 127"),
        PrePullView(exists=True, phase="Pending", waiting_reason="ImagePullBackOff", message="not found"),
    ],
)
def test_pre_pull_failure_fails_without_rollback(view: PrePullView) -> None:
    action = next_step(observe(pre_pulling(), after=8, pre_pull=view), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.PRE_PULL_FAILED
    assert action.delete_pre_pull is not None


def test_pre_pull_timeout_fails() -> None:
    view = PrePullView(exists=True, phase="Pending", waiting_reason="ContainerCreating")
    action = next_step(observe(pre_pulling(), after=61, pre_pull=view), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.PRE_PULL_TIMEOUT


def test_pre_pull_pod_missing_is_recreated_without_rewriting_the_record() -> None:
    action = next_step(observe(pre_pulling(), after=5, pre_pull=PrePullView(exists=False)), PRE_PULL)
    assert isinstance(action, CreatePrePullPod) and action.record is None
    assert patch_for(action, "1") == []


def test_pre_pull_running_waits() -> None:
    view = PrePullView(exists=True, phase="Running")
    assert isinstance(next_step(observe(pre_pulling(), after=5, pre_pull=view), PRE_PULL), WaitFor)


def test_standby_changed_during_pre_pull_fails() -> None:
    pod = set_container(pre_pulling(), "hotupgrade-b", image="registry.local/other:1")
    action = next_step(observe(pod, after=5, pre_pull=PrePullView(exists=True, phase="Running")), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.STANDBY_CHANGED


def test_pre_pull_skipped_when_pod_has_no_node() -> None:
    pod = raw_pod()
    del pod["spec"]["nodeName"]
    action = next_step(observe(pod, agents=SERVING_A), PRE_PULL)
    assert isinstance(action, PatchStandbyImage) and "pre-pull skipped" in action.record.message


def test_abort_during_pre_pull_fails_with_standby_untouched() -> None:
    pod = annotate(pre_pulling(), abort="x")
    action = next_step(observe(pod, after=5, pre_pull=PrePullView(exists=True, phase="Running")), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.ABORTED
    assert "standby untouched" in action.record.message


# --- steps 3-4: take-over -------------------------------------------------------------------


def test_take_over_completes_only_with_new_container_id_and_agent_serving() -> None:
    pod = taking_over()
    same_id = set_container(pod, "hotupgrade-b", cid="containerd://b1", status_image=NEW)
    not_yet = next_step(observe(same_id, agents=TAKEN_OVER, after=3), POLICY)
    assert isinstance(not_yet, WaitFor) and not_yet.record is None, "same containerID: not swapped yet"
    fresh = swapped_in(pod)
    starting = {**SERVING_A, "b": agent("b", "standby", "starting")}
    waiting = next_step(observe(fresh, agents=starting, after=3), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is None
    action = next_step(observe(fresh, agents=TAKEN_OVER, after=4), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.phase is Phase.DRAINING and action.record.taken_over
    assert action.event is not None and action.event.reason == "TakenOver"


def test_take_over_timeout_rolls_back() -> None:
    # The kubelet swapped the container, but its agent never took over.
    action = next_step(observe(swapped_in(taking_over()), agents=SERVING_A, after=61), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.TAKE_OVER_TIMEOUT
    assert (action.expect_image, action.image) == (NEW, EMPTY)
    assert action.record.phase is Phase.ROLLING_BACK


@pytest.mark.parametrize(
    ("waiting_reason", "reason"),
    [
        ("ErrImagePull", Reason.IMAGE_PULL_FAILED),
        ("ImagePullBackOff", Reason.IMAGE_PULL_FAILED),
        ("InvalidImageName", Reason.IMAGE_PULL_FAILED),
        ("CrashLoopBackOff", Reason.CONTAINER_FAILED),
        ("CreateContainerError", Reason.CONTAINER_FAILED),
        ("PostStartHookError", Reason.CONTAINER_FAILED),
    ],
)
def test_new_container_that_cannot_run_rolls_back(waiting_reason: str, reason: Reason) -> None:
    pod = set_container(taking_over(), "hotupgrade-b", cid=None, state="waiting", reason=waiting_reason)
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is reason
    assert action.record.rollback_from_id is None
    assert action.event is not None and action.event.reason == "UpgradeFailed"


def test_new_agent_failure_rolls_back() -> None:
    agents = {**SERVING_A, "b": agent("b", "standby", "failed", last_error="hot restart version mismatch")}
    action = next_step(observe(swapped_in(taking_over()), agents=agents, after=5), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.AGENT_FAILED
    assert "hot restart version mismatch" in action.record.message


def test_new_container_restarting_rolls_back() -> None:
    pod = set_container(taking_over(), "hotupgrade-b", cid="containerd://b4", restarts=3)
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.CONTAINER_FAILED


def test_new_container_that_already_exited_rolls_back() -> None:
    # A native sidecar whose postStart failed: the kubelet killed it, its agent exited 0 on the SIGTERM,
    # and the kubelet shows it terminated (no CrashLoopBackOff for an init container that exited 0).
    pod = swapped_in(taking_over(), state="terminated", exit_code=0)
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.CONTAINER_FAILED
    assert "exit code 0) after the image change" in action.record.message


def test_old_container_terminated_before_the_new_one_starts_waits() -> None:
    # The empty container the kubelet stopped for the change, before it created the new one: same id.
    pod = set_container(taking_over(), "hotupgrade-b", cid="containerd://b1", state="terminated")
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, WaitFor), action


def test_standby_changed_by_someone_else_rolls_back() -> None:
    pod = set_container(taking_over(), "hotupgrade-b", image="registry.local/other:1")
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.STANDBY_CHANGED
    assert action.expect_image == "registry.local/other:1"


def test_standby_reset_to_empty_by_someone_else_fails_untouched() -> None:
    pod = set_container(taking_over(), "hotupgrade-b", image=EMPTY)
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.STANDBY_CHANGED


def test_standby_container_gone_fails() -> None:
    pod = taking_over()
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "hotupgrade-b"]
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.STANDBY_CHANGED


def test_timeout_while_new_agent_holds_listeners_does_not_roll_back() -> None:
    midway = {
        "a": agent("a", "active", "draining", active="a"),
        "b": agent("b", "standby", "taking-over", active="a"),
    }
    pod = swapped_in(taking_over())
    waiting = next_step(observe(pod, agents=midway, after=61), POLICY)
    assert isinstance(waiting, WaitFor), "rolling back now would kill the Envoy holding the listeners"
    stuck = next_step(observe(pod, agents=midway, after=121), POLICY)
    assert isinstance(stuck, Fail) and stuck.record.reason is Reason.TAKE_OVER_STUCK
    assert all("/spec/" not in op["path"] for op in patch_for(stuck, "1"))


def test_take_over_still_in_progress_waits() -> None:
    action = next_step(observe(swapped_in(taking_over()), agents=SERVING_A, after=10), POLICY)
    assert isinstance(action, WaitFor) and action.record is None


def test_abort_during_take_over_rolls_back() -> None:
    pod = annotate(swapped_in(taking_over()), abort="now")
    action = next_step(observe(pod, agents=SERVING_A, after=10), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.ABORTED
    assert action.record.abort_token == "now"


def test_abort_after_new_agent_took_the_listeners_is_ignored() -> None:
    pod = annotate(swapped_in(taking_over()), abort="now")
    owning = {**SERVING_A, "b": agent("b", "standby", "taking-over", active="a")}
    action = next_step(observe(pod, agents=owning, after=10), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert "abort ignored" in action.record.message and action.record.abort_token == "now"
    assert action.record.phase is Phase.TAKING_OVER


# --- step 5: drain --------------------------------------------------------------------------


def test_drained_old_slot_resets_old_container_to_empty() -> None:
    pod = draining()
    action = next_step(observe(pod, agents=DRAINED, after=20), POLICY)
    assert isinstance(action, ResetOldToEmpty)
    assert (action.container, action.expect_image, action.image) == ("hotupgrade-a", OLD, EMPTY)
    assert action.record.old_container_id == "containerd://a1" and action.record.phase is Phase.RESETTING
    assert action.event is not None and action.event.reason == "Drained"


def test_old_envoy_still_draining_waits_and_never_resets() -> None:
    pod = draining()
    action = next_step(observe(pod, agents=TAKEN_OVER, after=40), POLICY)
    assert isinstance(action, WaitFor)
    unknown = next_step(observe(pod, agents={"a": unreachable("a"), "b": unreachable("b")}, after=40), POLICY)
    assert isinstance(unknown, WaitFor) and "unknown" in unknown.reason


def test_drain_timeout_follows_parent_shutdown_and_keeps_new_envoy() -> None:
    pod = draining()  # parent shutdown 30 s in the container env, drain grace 30 s
    assert isinstance(next_step(observe(pod, agents=TAKEN_OVER, after=5 + 59), POLICY), WaitFor)
    action = next_step(observe(pod, agents=TAKEN_OVER, after=5 + 61), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.DRAIN_TIMEOUT
    assert action.status is not None and action.status.active == "hotupgrade-b"
    assert action.status.sidecar_image == NEW
    assert all("/spec/" not in op["path"] for op in patch_for(action, "1")), "never reset a draining Envoy"


def test_abort_while_draining_is_ignored_and_consumed() -> None:
    pod = annotate(draining(), abort="late")
    action = next_step(observe(pod, agents=TAKEN_OVER, after=10), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.phase is Phase.DRAINING and action.record.abort_token == "late"
    again = next_step(observe(apply(pod, action), agents=TAKEN_OVER, after=11), POLICY)
    assert isinstance(again, WaitFor) and again.record is None


def test_retry_after_drain_timeout_resumes_at_draining() -> None:
    pod = draining()
    failed = apply(pod, next_step(observe(pod, agents=TAKEN_OVER, after=70), POLICY))
    assert isinstance(next_step(observe(failed, agents=TAKEN_OVER, after=80), POLICY), Noop), "no storm"
    retried = annotate(failed, retry="1")
    action = next_step(observe(retried, agents=DRAINED, after=90), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.phase is Phase.DRAINING and action.record.attempt == 2
    assert action.record.finished is None and action.record.retry_token == "1"
    resumed = apply(retried, action)
    assert isinstance(next_step(observe(resumed, agents=DRAINED, after=91), POLICY), ResetOldToEmpty)


# --- step 6: reset and complete -------------------------------------------------------------


def test_old_container_running_empty_image_completes_and_swaps_status() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a2", restarts=1)
    action = next_step(observe(pod, agents=DRAINED, after=25), POLICY)
    assert isinstance(action, Complete)
    assert action.record.phase is Phase.COMPLETED and action.record.finished is not None
    assert (action.status.active, action.status.standby, action.status.sidecar_image) == (
        "hotupgrade-b",
        "hotupgrade-a",
        NEW,
    )
    assert action.event.reason == "UpgradeCompleted"
    done = apply(pod, action)
    assert parse_status(done["metadata"]["annotations"][ANNOTATION_STATUS]) == action.status
    assert next_step(observe(done, agents=DRAINED, after=26), POLICY) == Noop(
        f"upgrade to {NEW} already Completed"
    )


def test_reset_waits_for_a_new_container_id() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a1", status_image=EMPTY)
    assert isinstance(next_step(observe(pod, agents=DRAINED, after=25), POLICY), WaitFor)


def test_reset_ignores_a_restart_still_on_the_old_image() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a9", restarts=1, status_image=OLD)
    action = next_step(observe(pod, agents=DRAINED, after=25), POLICY)
    assert isinstance(action, WaitFor), "a new containerID on the old image is not the reset"
    docker_form = set_container(pod, "hotupgrade-a", cid="containerd://a9", status_image=f"docker.io/{EMPTY}")
    assert isinstance(next_step(observe(docker_form, agents=DRAINED, after=26), POLICY), Complete)


def test_reset_reapplied_when_old_image_was_changed_back() -> None:
    pod = set_container(resetting(), "hotupgrade-a", image=OLD)
    action = next_step(observe(pod, agents=DRAINED, after=25), POLICY)
    assert isinstance(action, ResetOldToEmpty) and action.event is None
    assert action.record.phase is Phase.RESETTING


def test_reset_timeout_fails_but_records_the_new_active_slot() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid=None, state="waiting", reason="ErrImagePull")
    action = next_step(observe(pod, agents=DRAINED, after=20 + 61), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.RESET_TIMEOUT
    assert action.status is not None and action.status.active == "hotupgrade-b"


def test_reset_with_old_container_gone_fails() -> None:
    pod = resetting()
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "hotupgrade-a"]
    action = next_step(observe(pod, agents=DRAINED, after=25), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.RESET_TIMEOUT


def test_retry_after_reset_timeout_completes_when_old_runs_empty() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid=None, state="waiting", reason="ErrImagePull")
    failed = apply(pod, next_step(observe(pod, agents=DRAINED, after=90), POLICY))
    healed = annotate(set_container(failed, "hotupgrade-a", cid="containerd://a3", restarts=2), retry="go")
    resumed = apply(healed, next_step(observe(healed, agents=DRAINED, after=100), POLICY))
    action = next_step(observe(resumed, agents=DRAINED, after=101), POLICY)
    assert isinstance(action, Complete) and action.status.active == "hotupgrade-b"


# --- rollback -------------------------------------------------------------------------------


def test_rollback_finishes_when_standby_runs_empty_again() -> None:
    pod = rolling_back()
    record = record_of(pod)
    assert record.phase is Phase.ROLLING_BACK and record.reason is Reason.CONTAINER_FAILED
    still = next_step(observe(pod, agents=SERVING_A, after=6), POLICY)
    assert isinstance(still, WaitFor)
    back = set_container(pod, "hotupgrade-b", cid="containerd://b3", restarts=2)
    action = next_step(observe(back, agents=SERVING_A, after=8), POLICY)
    assert isinstance(action, Fail) and action.event.reason == "RolledBack"
    assert action.record.phase is Phase.FAILED and action.record.reason is Reason.CONTAINER_FAILED
    assert action.record.message.endswith("rolled back") and action.status is None
    failed = apply(back, action)
    assert isinstance(next_step(observe(failed, agents=SERVING_A, after=9), POLICY), Noop), "no retry storm"


def test_rollback_reapplied_if_standby_image_was_changed_again() -> None:
    pod = set_container(rolling_back(), "hotupgrade-b", image=NEW)
    action = next_step(observe(pod, agents=SERVING_A, after=8), POLICY)
    assert isinstance(action, RollBack) and action.image == EMPTY and action.event is None


def test_rollback_timeout_still_ends_failed() -> None:
    action = next_step(observe(rolling_back(), agents=SERVING_A, after=5 + 61), POLICY)
    assert isinstance(action, Fail) and "rollback incomplete" in action.record.message


def test_rollback_with_standby_gone_fails() -> None:
    pod = rolling_back()
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "hotupgrade-b"]
    action = next_step(observe(pod, agents=SERVING_A, after=8), POLICY)
    assert isinstance(action, Fail) and "disappeared" in action.record.message


def test_abort_during_rollback_changes_nothing() -> None:
    pod = annotate(rolling_back(), abort="again")
    assert isinstance(next_step(observe(pod, agents=SERVING_A, after=6), POLICY), WaitFor)


def test_retry_after_failed_rollback_starts_attempt_two() -> None:
    pod = rolling_back()
    back = set_container(pod, "hotupgrade-b", cid="containerd://b3", restarts=2)
    failed = apply(back, next_step(observe(back, agents=SERVING_A, after=8), POLICY))
    retried = annotate(failed, retry="2026-11-26T12:05:00Z")
    action = next_step(observe(retried, agents=SERVING_A, after=300), POLICY)
    assert isinstance(action, PatchStandbyImage)
    assert action.record.attempt == 2 and action.record.retry_token == "2026-11-26T12:05:00Z"
    assert action.record.standby_id_before == "containerd://b3"


def test_new_target_after_failure_starts_attempt_one() -> None:
    pod = rolling_back()
    back = set_container(pod, "hotupgrade-b", cid="containerd://b3", restarts=2)
    failed = apply(back, next_step(observe(back, agents=SERVING_A, after=8), POLICY))
    action = next_step(
        observe(annotate(failed, target="registry.local/x:3"), agents=SERVING_A, after=9), POLICY
    )
    assert isinstance(action, PatchStandbyImage) and action.record.attempt == 1


# --- a whole upgrade, then the next one in the other direction ------------------------------


def test_two_upgrades_in_a_row_alternate_slots() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a2", restarts=1)
    done = apply(pod, next_step(observe(pod, agents=DRAINED, after=25), POLICY))
    third = "registry.local/hotupgrade-sidecar:3"
    serving_b = {
        "a": unreachable("a"),
        "b": agent("b", "active", "serving", active="b", slots={"a": "standby", "b": "serving"}, epoch=1),
    }
    action = next_step(observe(annotate(done, target=third), agents=serving_b, after=30), POLICY)
    assert isinstance(action, PatchStandbyImage)
    assert (action.container, action.expect_image, action.image) == ("hotupgrade-a", EMPTY, third)
    assert (action.record.old_slot, action.record.new_slot, action.record.from_image) == ("b", "a", NEW)


def test_status_after_take_over_is_idempotent() -> None:
    record = upgrade_record(phase=Phase.RESETTING)
    once = status_after_take_over(STATUS, record)
    assert status_after_take_over(once, record) == once
    assert once.active == "hotupgrade-b" and once.slots == STATUS.slots


def test_the_agents_are_asked_only_when_the_decision_reads_them() -> None:
    def unasked(pod: dict[str, Any], after: float = 0.0) -> Action | Observe:
        return next_step(observe(pod, agents=None, after=after), POLICY)

    assert unasked(raw_pod(target=None)) == Noop("no target image")
    assert unasked(raw_pod(status=None)) == Noop("pod is not injected")
    assert isinstance(unasked(raw_pod(target=OLD)), Fail), "already on the target: told without asking"
    assert unasked(raw_pod()) == Observe(agents=True)
    assert unasked(annotate(draining(), target=None)) == Observe(agents=True)
    done = set_container(resetting(), "hotupgrade-a", cid="containerd://a2", restarts=1)
    completed = apply(done, next_step(observe(done, agents=DRAINED, after=25), POLICY))
    assert isinstance(unasked(completed, after=30), Noop), "upgraded pods cost no agent calls"
    not_ready = unasked(raw_pod(ready=False))
    assert isinstance(not_ready, WaitFor) and "not Ready" in not_ready.reason, "decided without them"


def test_the_pre_pull_pod_is_looked_up_only_while_pre_pulling() -> None:
    pod = pre_pulling()
    name = record_of(pod).pre_pull_pod
    assert name is not None
    assert next_step(observe(pod, after=5), PRE_PULL) == Observe(pre_pull_pod=name)
    pulled = next_step(observe(pod, after=8, pre_pull=PrePullView(exists=True, phase="Succeeded")), PRE_PULL)
    after = apply(pod, pulled)
    assert record_of(after).pre_pull_pod is None
    assert next_step(observe(after, agents=None, after=9), PRE_PULL) == Observe(agents=True), "no pre-pull"


def test_corrupted_record_counts_as_none_and_the_checks_stay_safe() -> None:
    pod = taking_over()
    pod["metadata"]["annotations"][ANNOTATION_UPGRADE] = "garbage"
    action = next_step(observe(pod, agents=SERVING_A, after=3), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.STANDBY_NOT_EMPTY


def test_pre_pull_pod_name_is_stable_and_dns_safe() -> None:
    name = pre_pull_pod_name("uid-1", NEW)
    assert name == pre_pull_pod_name("uid-1", NEW) != pre_pull_pod_name("uid-1", OLD)
    assert len(name) <= 63 and name.replace("-", "").isalnum() and name.islower()


# --- Events owed by the record --------------------------------------------------------------


def owed(action: Action | Observe) -> tuple[int, str, str] | None:
    """(seq, type, reason) of the Event the action's record owes, checked against the action's Event."""
    assert not isinstance(action, Noop | Observe) and action.record is not None
    owes = due(action.record)
    if owes is None:
        return None
    assert action.event is not None and (owes.type, owes.reason, owes.message) == (
        action.event.type,
        action.event.reason,
        action.event.message,
    )
    return owes.seq, owes.type, owes.reason


def test_every_event_of_an_upgrade_is_owed_by_the_record_written_with_it() -> None:
    start = next_step(observe(raw_pod(), agents=SERVING_A), POLICY)
    assert owed(start) == (1, "Normal", "UpgradeStarted")
    pod = swapped_in(apply(raw_pod(), start))
    took = next_step(observe(pod, agents=TAKEN_OVER, after=5), POLICY)
    assert owed(took) == (2, "Normal", "TakenOver")
    pod = apply(pod, took)
    drained = next_step(observe(pod, agents=DRAINED, after=20), POLICY)
    assert owed(drained) == (3, "Normal", "Drained")
    pod = set_container(apply(pod, drained), "hotupgrade-a", cid="containerd://a2", restarts=1)
    done = next_step(observe(pod, agents=DRAINED, after=22), POLICY)
    assert isinstance(done, Complete) and owed(done) == (4, "Normal", "UpgradeCompleted")
    assert due(record_of(apply(pod, done))) == due(done.record), "the patch carries it"


def test_a_posted_event_is_not_owed_again_and_the_next_one_is_numbered_after_it() -> None:
    pod = taking_over()
    marked = posted(record_of(pod))
    pod["metadata"]["annotations"][ANNOTATION_UPGRADE] = marked.render()
    assert marked.event is not None and marked.event.posted and due(marked) is None
    waiting = next_step(observe(pod, agents=SERVING_A, after=1), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is None
    took = next_step(observe(swapped_in(pod), agents=TAKEN_OVER, after=5), POLICY)
    assert owed(took) == (2, "Normal", "TakenOver")


def test_a_write_without_an_event_keeps_what_the_record_owes() -> None:
    pod = resetting()
    assert due(record_of(pod)) is not None
    reapply = next_step(
        observe(set_container(pod, "hotupgrade-a", image=OLD), agents=DRAINED, after=21), POLICY
    )
    assert isinstance(reapply, ResetOldToEmpty) and reapply.event is None
    assert reapply.record.event == record_of(pod).event, "not dropped, not renumbered"
    consumed = next_step(observe(annotate(draining(), abort="x"), agents=TAKEN_OVER, after=6), POLICY)
    assert isinstance(consumed, WaitFor) and consumed.event is None and consumed.record is not None
    assert consumed.record.event == record_of(draining()).event


def test_two_failures_in_one_attempt_owe_two_events() -> None:
    pod = rolling_back()
    first = record_of(pod)
    owes = due(first)
    assert owes is not None and owes.reason == "UpgradeFailed"
    timeout = next_step(observe(pod, agents=SERVING_A, after=5 + 61), POLICY)
    assert isinstance(timeout, Fail) and owed(timeout) == (
        owes.seq + 1,
        "Warning",
        "UpgradeFailed",
    )
    assert timeout.record.attempt == first.attempt
