"""The take-over fence in the step machine (docs/contract.md "The take-over fence"): a rollback that
undoes a standby image change waits for the serving agent's fence; a refused or unanswered fence never
rolls back; a later swap of that slot lifts the fence first; after a rollback an Envoy must be seen
serving, or the controller repairs forward.

The case that found it (release e2e, load 30-76): the API server still showed b's old container 27 s
after the change, so at `kubelet_grace` the controller saw an ignored image change and rolled back while
b's new agent was deciding to take over; b's Envoy went LIVE, the rollback killed it, a had drained: no
Envoy, pod Ready.
"""

from dataclasses import replace
from typing import Any

from controller.actions import Fail, FenceTakeOver, PatchStandbyImage, RollBack, WaitFor
from controller.observed import AgentView, agent_view
from controller.record import Phase, Reason
from controller.steps import fence_token, next_step
from tests.unit.controller.podfixtures import EMPTY, NEW, agent, observe, raw_pod, set_container, unreachable
from tests.unit.controller.test_steps import POLICY, apply, record_of, rolling_back, taking_over

GRACE_PASSED = 31  # past POLICY.kubelet_grace (30 s): the API server still shows b's old container


def serving_a(**fence: Any) -> dict[str, AgentView]:
    """a serves and answers /fence (schema 1.4+); `fence`: what its /status shows (slot, token)."""
    a = replace(
        agent("a", "active", "serving", slots={"a": "serving", "b": "standby"}),
        fences=True,
        fence_slot=fence.get("slot"),
        fence_token=fence.get("token"),
    )
    return {"a": a, "b": unreachable("b")}


def test_a_rollback_first_asks_the_serving_agent_to_fence_the_new_slot() -> None:
    pod = taking_over()
    action = next_step(observe(pod, agents=serving_a(), after=GRACE_PASSED), POLICY)
    assert isinstance(action, FenceTakeOver), action
    assert (action.agent_slot, action.slot, action.lift) == ("a", "b", False)
    assert action.token == fence_token(record_of(pod))
    assert "KubeletIgnoredImageChange" not in str(record_of(pod).reason)  # nothing written yet


def test_the_rollback_happens_once_the_fence_of_this_attempt_shows() -> None:
    # Also what a restarted controller does: the fence is in the run dir, /status shows it.
    pod = taking_over()
    fenced = serving_a(slot="b", token=fence_token(record_of(pod)))
    action = next_step(observe(pod, agents=fenced, after=GRACE_PASSED), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    assert (action.expect_image, action.image) == (NEW, EMPTY)


def test_a_fence_of_another_attempt_is_not_ours() -> None:
    pod = taking_over()
    stale = serving_a(slot="b", token="b:1@2026-11-26T11:00:00Z")
    action = next_step(observe(pod, agents=stale, after=GRACE_PASSED), POLICY)
    assert isinstance(action, FenceTakeOver) and action.token == fence_token(record_of(pod))


def test_a_refused_fence_lets_the_take_over_proceed_and_the_existing_checks_judge_it() -> None:
    # The agent refused (409): b had begun; the next look shows it taking over, then serving.
    pod = taking_over()
    began = {
        "a": serving_a()["a"],
        "b": agent("b", "standby", "taking-over", slots={"a": "serving", "b": "taking-over"}, epoch=1),
    }
    action = next_step(observe(pod, agents=began, after=GRACE_PASSED + 1), POLICY)
    assert isinstance(action, WaitFor) and action.record is None
    live = {
        "a": agent("a", "retired", "draining", active="b", slots={"a": "draining", "b": "serving"}),
        "b": agent("b", "active", "serving", active="b", slots={"a": "draining", "b": "serving"}, epoch=1),
    }
    swapped = set_container(pod, "hotupgrade-b", cid="containerd://b2", restarts=1)
    taken = next_step(observe(swapped, agents=live, after=GRACE_PASSED + 3), POLICY)
    assert isinstance(taken, WaitFor) and taken.record is not None
    assert taken.record.phase is Phase.DRAINING and taken.record.taken_over


def test_an_unanswered_fence_is_asked_again_and_never_rolls_back() -> None:
    pod = taking_over()
    for agents in (serving_a(), {"a": unreachable("a"), "b": unreachable("b")}):
        again = next_step(observe(pod, agents=agents, after=GRACE_PASSED + 10), POLICY)
        assert isinstance(again, FenceTakeOver)
    stuck = next_step(observe(pod, agents=serving_a(), after=2 * POLICY.step_timeout + 1), POLICY)
    assert isinstance(stuck, Fail) and stuck.record.reason is Reason.TAKE_OVER_STUCK
    assert "not rolled back" in stuck.record.message and "could not be fenced" in stuck.record.message
    assert stuck.status is None


def test_an_agent_before_the_fence_is_rolled_back_as_before() -> None:
    legacy = {"a": agent("a", "active", "serving", slots={"a": "serving"}), "b": unreachable("b")}
    action = next_step(observe(taking_over(), agents=legacy, after=GRACE_PASSED), POLICY)
    assert isinstance(action, RollBack)


def test_the_fence_is_lifted_before_the_slot_is_set_to_an_image_again() -> None:
    pod = raw_pod()
    fenced = serving_a(slot="b", token="b:1@2026-11-26T11:00:00Z")
    lift = next_step(observe(pod, agents=fenced), POLICY)
    assert isinstance(lift, FenceTakeOver) and lift.lift and (lift.agent_slot, lift.slot) == ("a", "b")
    swap = next_step(observe(pod, agents=serving_a()), POLICY)
    assert isinstance(swap, PatchStandbyImage) and swap.image == NEW
    other = next_step(observe(pod, agents=serving_a(slot="a", token="x")), POLICY)
    assert isinstance(other, PatchStandbyImage), "a fence of the other slot is not in the way"


def reset(pod: dict[str, Any]) -> dict[str, Any]:
    """The kubelet applied the rollback: a fresh b container on the empty image."""
    return set_container(pod, "hotupgrade-b", cid="containerd://b3", restarts=2)


def test_a_rollback_ends_only_when_the_old_envoy_is_seen_serving() -> None:
    back = reset(rolling_back())
    done = next_step(observe(back, agents=serving_a(), after=8), POLICY)
    assert isinstance(done, Fail) and done.event.reason == "RolledBack"
    assert "old Envoy kept serving" in done.event.message


def test_no_envoy_after_a_rollback_is_said_and_repaired_forward() -> None:
    back = reset(rolling_back())
    gone = {
        "a": agent("a", "retired", "retired", active="b", slots={"a": "retired", "b": "draining"}, epoch=0),
        "b": unreachable("b"),
    }
    action = next_step(observe(back, agents=gone, after=8), POLICY)
    assert isinstance(action, PatchStandbyImage), action
    assert (action.expect_image, action.image) == (EMPTY, NEW)
    assert action.record.phase is Phase.TAKING_OVER
    assert action.record.reason is Reason.NO_ENVOY_AFTER_ROLLBACK
    assert action.event is not None and action.event.reason == "NoEnvoyAfterRollBack"
    assert "kept serving" not in action.event.message and "retired/retired" in action.record.message
    assert action.record.standby_seen.container_id == "containerd://b3"
    repairing = apply(back, action)
    assert record_of(repairing).phase is Phase.TAKING_OVER


def test_a_repair_waits_for_a_draining_old_envoy_to_exit() -> None:
    back = reset(rolling_back())
    draining = {
        "a": agent("a", "retired", "draining", active="b", slots={"a": "draining", "b": "serving"}),
        "b": unreachable("b"),
    }
    waiting = next_step(observe(back, agents=draining, after=8), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is None and "still draining" in waiting.reason
    late = next_step(observe(back, agents=draining, after=5 + POLICY.step_timeout + 1), POLICY)
    assert isinstance(late, PatchStandbyImage) and late.image == NEW


def test_a_repair_lifts_the_fence_first() -> None:
    back = reset(rolling_back())
    retired = replace(
        agent("a", "retired", "retired", active="b", slots={"a": "retired"}),
        fences=True,
        fence_slot="b",
        fence_token="whatever",
    )
    action = next_step(observe(back, agents={"a": retired, "b": unreachable("b")}, after=8), POLICY)
    assert isinstance(action, FenceTakeOver) and action.lift and action.slot == "b"


def test_an_unanswering_old_agent_after_a_rollback_is_never_reported_as_serving() -> None:
    back = reset(rolling_back())
    silent = {"a": unreachable("a"), "b": unreachable("b")}
    waiting = next_step(observe(back, agents=silent, after=8), POLICY)
    assert isinstance(waiting, WaitFor)
    failed = next_step(observe(back, agents=silent, after=5 + POLICY.step_timeout + 1), POLICY)
    assert isinstance(failed, Fail) and failed.record.phase is Phase.FAILED
    assert "kept serving" not in failed.event.message
    assert "whether its Envoy serves is unknown" in failed.record.message


def test_the_fence_and_whether_an_agent_has_one_are_read_from_status() -> None:
    fence = {"slot": "b", "token": "t", "parent_epoch": 0, "fenced_at": 1.0}
    view = agent_view("a", {"schemaVersion": "1.4", "role": "active", "fence": fence})
    assert (view.fences, view.fence_slot, view.fence_token) == (True, "b", "t")
    assert agent_view("a", {"schemaVersion": "1.5", "fence": None}).fences
    # 1.3 is the stall-only schema (s13-wedge): it has no /fence, so it is rolled back unfenced.
    older_versions = ("1.2", "1.3", "2.0", "x")
    for older in ({}, *({"schemaVersion": v} for v in older_versions)):
        assert not agent_view("a", older).fences, older


def test_a_rollback_is_not_done_while_the_new_slots_agent_still_answers() -> None:
    # The pod's status says b runs the empty image, but b's agent answers: the status lags the kubelet.
    back = reset(rolling_back())
    still = {**serving_a(), "b": agent("b", "standby", "taking-over", slots={"a": "serving"}, epoch=1)}
    waiting = next_step(observe(back, agents=still, after=8), POLICY)
    assert isinstance(waiting, WaitFor) and "still answers" in waiting.reason
    failed = {**serving_a(), "b": agent("b", "standby", "failed", last_error="fenced: ...")}
    done = next_step(observe(back, agents=failed, after=8), POLICY)
    assert isinstance(done, Fail) and done.event.reason == "RolledBack"


def test_a_failed_agent_proves_its_container_ran_so_a_stale_status_never_ends_the_rollback() -> None:
    # Release e2e: b's agent reported failed during its postStart hook, when the kubelet had not yet
    # published b's new container; the controller fenced, rolled back and, seeing "the container from
    # before the change", ended the upgrade. The kubelet then published the failed hook and held the empty
    # image in its crash-loop back-off: NotReady for 16 s after the record said done, and the planner
    # started another upgrade (3 pods at risk, maxUnavailable 2).
    pod = taking_over()
    failed_b = agent(
        "b", "standby", "failed", slots={"a": "serving"}, last_error="Envoy rejected the bootstrap"
    )
    token = fence_token(record_of(pod))
    fenced = {**serving_a(slot="b", token=token), "b": failed_b}
    # The controller first waits for the status to show b's new container (steps.status_lags); a status
    # that still lags after the step timeout is rolled back anyway, and must then never end the rollback.
    waiting = next_step(observe(pod, agents=fenced, after=3), POLICY)
    assert isinstance(waiting, WaitFor) and "report its container" in waiting.reason, waiting
    late = POLICY.step_timeout + 1
    action = next_step(observe(pod, agents=fenced, after=late), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.AGENT_FAILED, action
    rolling = apply(pod, action)
    for agents in (fenced, {**fenced, "b": unreachable("b")}):
        stale = next_step(observe(rolling, agents=agents, after=late + 1), POLICY)
        assert isinstance(stale, WaitFor) and "run the empty image" in stale.reason, stale
    done = next_step(observe(reset(rolling), agents=serving_a(slot="b", token=token), after=9), POLICY)
    assert isinstance(done, Fail) and done.event.reason == "RolledBack", done
