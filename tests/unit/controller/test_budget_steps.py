"""How the step machine meets the PodDisruptionBudget gate: asked last, only when an upgrade would leave
Pending; a refusal keeps the record Pending with the budget named, one Event, no deadline; an upgrade
past Pending never asks."""

from dataclasses import replace

from controller.actions import CreatePrePullPod, Fail, Observe, PatchStandbyImage, WaitFor
from controller.observed import BudgetView
from controller.record import Phase, Reason
from controller.steps import next_step
from tests.unit.controller.podfixtures import SERVING_A, observe, raw_pod
from tests.unit.controller.test_steps import (
    DRAINED,
    POLICY,
    PRE_PULL,
    TAKEN_OVER,
    apply,
    draining,
    swapped_in,
    taking_over,
)

IN_USE = "PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use"
FULL = BudgetView(admitted=False, message=f"{IN_USE} (web-0 upgrading)")
FULL_ELSEWHERE = BudgetView(admitted=False, message=f"{IN_USE} (web-2 not Ready)")
ROOM = BudgetView(admitted=True)


def test_the_gate_is_asked_only_once_the_checks_pass() -> None:
    assert next_step(observe(raw_pod(), agents=SERVING_A, budget=None), POLICY) == Observe(budget=True)
    not_ready = next_step(observe(raw_pod(ready=False), agents=SERVING_A, budget=None), POLICY)
    assert isinstance(not_ready, WaitFor) and "pod is not Ready" in not_ready.reason


def test_a_full_budget_keeps_the_upgrade_pending_naming_it_with_one_event() -> None:
    pod = raw_pod()
    held = next_step(observe(pod, agents=SERVING_A, budget=FULL), PRE_PULL)
    assert isinstance(held, WaitFor) and held.record is not None
    message = "waiting for PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-0 upgrading)"
    assert held.record.phase is Phase.PENDING and held.record.message == message
    assert held.event is not None and held.event.reason == "WaitingForDisruptionBudget"
    assert held.event.message == message and held.event.type == "Normal"
    assert held.record.event is not None and not held.record.event.posted, "owed, posted after the write"
    pending = apply(pod, held)

    same = next_step(observe(pending, agents=SERVING_A, after=5, budget=FULL), PRE_PULL)
    assert isinstance(same, WaitFor) and same.record is None, "the same wait: no write"
    other = next_step(observe(pending, agents=SERVING_A, after=6, budget=FULL_ELSEWHERE), PRE_PULL)
    assert isinstance(other, WaitFor) and other.record is not None and other.event is None, "one Event"
    assert other.record.message.endswith("(web-2 not Ready)")

    # No deadline: an hour later it still waits, and starts as soon as the budget has room.
    late = next_step(observe(pending, agents=SERVING_A, after=3600, budget=FULL), PRE_PULL)
    assert isinstance(late, WaitFor) and late.record is None
    start = next_step(observe(pending, agents=SERVING_A, after=3601, budget=ROOM), PRE_PULL)
    assert isinstance(start, CreatePrePullPod) and start.record is not None
    assert start.record.phase is Phase.PRE_PULLING and start.event is not None
    assert start.event.reason == "UpgradeStarted"


def test_without_pre_pull_the_standby_is_not_touched_while_held() -> None:
    held = next_step(observe(raw_pod(), agents=SERVING_A, budget=FULL), POLICY)
    assert isinstance(held, WaitFor), "no PatchStandbyImage"
    start = next_step(observe(apply(raw_pod(), held), agents=SERVING_A, after=2, budget=ROOM), POLICY)
    assert isinstance(start, PatchStandbyImage) and start.record.phase is Phase.TAKING_OVER


def test_checks_failing_after_a_long_budget_wait_get_their_own_timeout() -> None:
    pending = apply(raw_pod(), next_step(observe(raw_pod(), agents=SERVING_A, budget=FULL), POLICY))
    pending["status"]["conditions"][0]["status"] = "False"
    waiting = next_step(observe(pending, agents=SERVING_A, after=600, budget=FULL), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is not None, "not ChecksTimeout"
    assert waiting.record.message == "waiting: pod is not Ready"
    again = apply(pending, waiting)
    later = next_step(observe(again, agents=SERVING_A, after=630, budget=FULL), POLICY)
    assert isinstance(later, WaitFor), "the checks' clock started at 600 s"
    timed_out = next_step(observe(again, agents=SERVING_A, after=661, budget=FULL), POLICY)
    assert isinstance(timed_out, Fail) and timed_out.record.reason is Reason.CHECKS_TIMEOUT


def test_an_upgrade_past_pending_never_asks_the_gate() -> None:
    for pod, agents in (
        (taking_over(), SERVING_A),
        (swapped_in(taking_over()), TAKEN_OVER),
        (draining(), DRAINED),
    ):
        action = next_step(observe(pod, agents=agents, after=5, budget=None), POLICY)
        assert action != Observe(budget=True) and not isinstance(action, Observe), action
    full = next_step(observe(taking_over(), agents=SERVING_A, after=1, budget=FULL), POLICY)
    assert isinstance(full, WaitFor) and "waiting for slot b" in full.reason


def test_a_budget_wait_does_not_survive_a_new_target() -> None:
    pending = apply(raw_pod(), next_step(observe(raw_pod(), agents=SERVING_A, budget=FULL), POLICY))
    pending["metadata"]["annotations"]["hotupgrade.io/target-image"] = "registry.local/hotupgrade-sidecar:3"
    action = next_step(observe(pending, agents=SERVING_A, after=5, budget=ROOM), POLICY)
    assert isinstance(action, PatchStandbyImage)
    assert action.record.to_image.endswith(":3") and replace(action.record, event=None).attempt == 1
