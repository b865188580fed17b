"""The fleet planner: strategy arithmetic, partition, pause, failures, overlaps, unready pods, retargeting,
rollback, and properties over random fleets (budget never exceeded, one upgrade per pod)."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.record import SWAP_WAIT, Phase, UpgradeRecord
from controller.rollout import (
    PodFacts,
    PodState,
    ReleasePlan,
    Start,
    Withdrawal,
    after_withdrawal,
    allowed_unavailable,
    at_risk,
    at_swap,
    heading_to,
    held,
    held_back,
    invalid_spec_status,
    orphaned,
    owning_release,
    plan_fleet,
    plan_release,
    pod_facts,
    stopped_on_failures,
    touched,
    withdrawn,
)
from releaseapi.release import (
    ConditionType,
    IntOrPercent,
    Overlap,
    Release,
    ReleaseSpec,
    ReleaseStatus,
    Strategy,
)
from releaseapi.selector import LabelSelector, Requirement
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, T0, raw_pod, upgrade_record

NEWER = "registry.local/hotupgrade-sidecar:3"
WEB = LabelSelector((Requirement("app", "==", frozenset({"web"})),))


def release(
    image: str = NEW,
    *,
    name: str = "web",
    selector: LabelSelector = WEB,
    priority: int = 0,
    status: ReleaseStatus | None = None,
    **strategy: Any,
) -> Release:
    spec = ReleaseSpec(selector=selector, image=image, strategy=Strategy(**strategy), priority=priority)
    return Release(name=name, generation=2, spec=spec, status=status or ReleaseStatus())


def pod(
    name: str,
    *,
    image: str = OLD,
    ready: bool = True,
    record: UpgradeRecord | None = None,
    target: str | None = None,
    labels: dict[str, str] | None = None,
    namespace: str = "shop",
    swap_hold: str | None = None,
) -> PodFacts:
    return PodFacts(
        namespace=namespace,
        name=name,
        labels={"app": "web"} if labels is None else labels,
        ready=ready,
        status=replace(STATUS, sidecar_image=image),
        record=record,
        target=target,
        swap_hold=swap_hold,
    )


def in_flight(name: str, phase: Phase, *, to: str = NEW, ready: bool = True, image: str = OLD) -> PodFacts:
    return pod(name, image=image, ready=ready, target=to, record=upgrade_record(phase=phase, to_image=to))


def holding(name: str, *, to: str = NEW, phase: Phase = Phase.PRE_PULLING, ready: bool = True) -> PodFacts:
    """Started by a release: pre-pulled and waiting at the swap the release holds."""
    record = upgrade_record(phase=phase, to_image=to, message=f"{SWAP_WAIT} to {to} (maxUnavailable)")
    return pod(name, ready=ready, target=to, record=record, swap_hold=to)


def done(name: str, to: str = NEW, *, ready: bool = True) -> PodFacts:
    record = upgrade_record(phase=Phase.COMPLETED, to_image=to)
    return pod(name, image=to, ready=ready, target=to, record=record)


def failed(name: str, to: str = NEW, *, image: str = OLD) -> PodFacts:
    record = upgrade_record(phase=Phase.FAILED, to_image=to)
    return pod(name, image=image, target=to, record=record)


def plan(r: Release, pods: Sequence[PodFacts]) -> ReleasePlan:
    return plan_fleet([r], pods, {}, now=T0).releases[r.name]


def started(p: ReleasePlan) -> list[str]:
    return [s.name for s in p.starts]


def lifted(p: ReleasePlan) -> list[str]:
    return [x.name for x in p.lifts]


def withdrew(p: ReleasePlan) -> list[str]:
    return [x.name for x in p.withdrawals]


def cond(p: ReleasePlan, kind: ConditionType) -> tuple[bool, str]:
    found = p.status.condition(kind)
    assert found is not None
    return found.status, found.reason


def fleet(n: int) -> list[PodFacts]:
    return [pod(f"web-{i}") for i in range(n)]


# --- strategy arithmetic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "matched", "expected"),
    [
        (IntOrPercent(1), 6, 1),
        (IntOrPercent(3), 2, 3),  # more than the pods: harmless
        (IntOrPercent(25, True), 10, 2),  # 2.5 rounds down, as StatefulSet and Deployment
        (IntOrPercent(1, True), 3, 1),  # never 0 with pods
        (IntOrPercent(50, True), 5, 2),
        (IntOrPercent(34, True), 3, 1),
        (IntOrPercent(100, True), 7, 7),
        (IntOrPercent(30, True), 0, 0),
    ],
)
def test_max_unavailable_rounds_down_to_at_least_one(
    value: IntOrPercent, matched: int, expected: int
) -> None:
    assert allowed_unavailable(Strategy(max_unavailable=value), matched) == expected


@pytest.mark.parametrize(
    ("value", "matched", "expected"),
    [
        (IntOrPercent(0), 6, 0),
        (IntOrPercent(3), 6, 3),
        (IntOrPercent(10), 6, 6),  # clamped to matched
        (IntOrPercent(50, True), 5, 3),  # 2.5 rounds up: at least as many stay as asked
        (IntOrPercent(1, True), 6, 1),  # > 0% keeps at least one
        (IntOrPercent(99, True), 4, 3),  # < 100% moves at least one (Kruise CalculatePartitionReplicas)
        (IntOrPercent(100, True), 4, 4),
        (IntOrPercent(99, True), 1, 1),  # one pod: no exception
    ],
)
def test_partition_arithmetic_follows_kruise(value: IntOrPercent, matched: int, expected: int) -> None:
    assert held_back(Strategy(partition=value), matched) == expected


def test_starts_first_pods_by_name_within_max_unavailable() -> None:
    p = plan(release(max_unavailable=IntOrPercent(2)), [pod(f"web-{i}") for i in (3, 0, 5, 1, 4, 2)])
    assert p.starts == (Start("shop", "web-0", NEW), Start("shop", "web-1", NEW))
    assert (p.allowed_unavailable, p.unavailable) == (2, 0)
    assert (p.status.matched, p.status.upgrading, p.status.updated) == (6, 2, 0)
    assert cond(p, ConditionType.PROGRESSING) == (True, "RollingOut")
    assert cond(p, ConditionType.COMPLETE) == (False, "PodsRemaining")


def test_percent_of_matched() -> None:
    assert started(plan(release(max_unavailable=IntOrPercent(25, True)), fleet(10))) == ["web-0", "web-1"]
    assert started(plan(release(max_unavailable=IntOrPercent(30, True)), fleet(10))) == [
        "web-0",
        "web-1",
        "web-2",
    ]


def test_in_flight_pods_use_the_budget() -> None:
    pods = [in_flight("web-0", Phase.TAKING_OVER), holding("web-1"), holding("web-2"), *fleet(5)[3:]]
    two = plan(release(max_unavailable=IntOrPercent(2)), pods)
    # web-0 swapping takes 1 of 2: one hold is lifted; one held pod is left, so one more pre-pulls.
    assert (lifted(two), started(two), two.unavailable, two.held) == (["web-1"], ["web-3"], 1, 2)
    one = plan(release(), pods)
    assert (lifted(one), started(one)) == ([], [])


def test_starts_are_held_and_bounded_apart_from_max_unavailable() -> None:
    pods = [in_flight("web-0", Phase.TAKING_OVER), in_flight("web-1", Phase.TAKING_OVER), *fleet(5)[2:]]
    p = plan(release(max_unavailable=IntOrPercent(2)), pods)
    # Both swaps fill maxUnavailable, yet the next two pre-pull meanwhile (held, not at risk).
    assert (p.unavailable, started(p), lifted(p)) == (2, ["web-2", "web-3"], [])
    more = plan(
        release(max_unavailable=IntOrPercent(2)), [*pods[:2], holding("web-2"), holding("web-3"), pods[4]]
    )
    assert (started(more), lifted(more)) == ([], [])  # held pods are bounded by maxUnavailable too


def test_only_pods_waiting_at_the_swap_are_lifted_never_unready_ones() -> None:
    checking = upgrade_record(phase=Phase.PENDING, message="checking")
    pending = pod("web-0", target=NEW, record=checking, swap_hold=NEW)
    pulling_record = upgrade_record(phase=Phase.PRE_PULLING, message="pre-pulling")
    pulling = pod("web-1", target=NEW, record=pulling_record, swap_hold=NEW)
    pods = [pending, pulling, holding("web-2", ready=False), holding("web-3")]
    p = plan(release(max_unavailable=IntOrPercent(3)), pods)
    assert p.unavailable == 1  # the unready held pod
    assert lifted(p) == ["web-3"] and p.lifts[0].image == NEW  # checking and pre-pulling pods wait
    assert [at_swap(x) for x in pods] == [False, False, False, True]


def test_a_pause_still_lifts_pods_held_at_the_swap() -> None:
    pods = [holding("web-0"), pod("web-1")]
    p = plan(release(paused=True), pods)
    assert (lifted(p), started(p), withdrew(p)) == (["web-0"], [], [])


# --- the swap window's two faults (the revert d60ddd6): held pods of a stopped or edited release ----------


def test_a_failure_paused_release_lifts_no_held_pod_and_withdraws_them() -> None:
    """The release e2e's broken image: maxFailures reached while pods wait at the swap toward it. They
    were lifted (5 failed pods against maxFailures 2 + maxUnavailable 2 - 1); now they are withdrawn."""
    pods = [failed("web-0"), failed("web-1"), holding("web-2"), holding("web-3"), pod("web-4")]
    p = plan(release(max_unavailable=IntOrPercent(2), max_failures=2), pods)
    assert (lifted(p), started(p)) == ([], [])
    # Pre-pulled: the step machine holds a record, so the hold stays to tell it to drop both.
    assert p.withdrawals == (
        Withdrawal("shop", "web-2", NEW, target=True, hold=False),
        Withdrawal("shop", "web-3", NEW, target=True, hold=False),
    )
    assert cond(p, ConditionType.PAUSED) == (True, "TooManyFailures")
    # Queued with the hold, no record yet: the release drops target and hold itself.
    queued = pod("web-2", target=NEW, swap_hold=NEW)
    q = plan(release(max_failures=2), [failed("web-0"), failed("web-1"), queued])
    assert q.withdrawals == (Withdrawal("shop", "web-2", NEW, target=True, hold=True),)


def test_a_paused_release_with_a_failure_on_its_image_lifts_nothing() -> None:
    pods = [failed("web-0"), holding("web-1"), pod("web-2")]
    p = plan(release(paused=True, max_failures=3), pods)
    assert (lifted(p), started(p), withdrew(p)) == ([], [], ["web-1"])
    running = plan(release(max_failures=3), pods)  # not paused, below maxFailures: the rollout goes on
    assert (lifted(running), withdrew(running)) == (["web-1"], [])


@pytest.mark.parametrize(
    ("max_failures", "paused", "failed_pods", "stopped"),
    [(2, False, 1, False), (2, False, 2, True), (2, True, 0, False), (2, True, 1, True), (1, False, 1, True)],
)
def test_stopped_on_failures(max_failures: int, paused: bool, failed_pods: int, stopped: bool) -> None:
    strategy = Strategy(max_failures=max_failures, paused=paused)
    assert stopped_on_failures(strategy, failed_pods) is stopped


def test_rolled_back_onto_the_running_image_held_pods_are_withdrawn_not_failed() -> None:
    """Rollback by editing spec.image back to status.previousImages[0], the image the held pods still run:
    they were retargeted onto it (the step machine failed them as AlreadyRunning, counted against the
    release) or, pre-pulled, lifted toward the broken image. Now: withdrawn, and the release completes."""
    history = ReleaseStatus(image=NEW, previous_images=(OLD,))
    r = release(OLD, status=history, max_unavailable=IntOrPercent(2), max_failures=2)
    queued = pod("web-2", target=NEW, swap_hold=NEW)  # started with the hold, the step machine not yet
    pending = pod(
        "web-3",
        target=NEW,
        swap_hold=NEW,
        record=upgrade_record(phase=Phase.PENDING, to_image=NEW, message=f"{SWAP_WAIT} to {NEW} (x)"),
    )
    pods = [failed("web-0"), failed("web-1"), queued, pending, holding("web-4"), pod("web-5")]
    p = plan(r, pods)
    assert (lifted(p), started(p)) == ([], [])
    assert p.withdrawals == (
        Withdrawal("shop", "web-2", NEW, target=True, hold=True),
        Withdrawal("shop", "web-3", NEW, target=True, hold=False),
        Withdrawal("shop", "web-4", NEW, target=True, hold=False),
    )
    assert p.status.failed == 0
    # Its status is the plan's writes applied: the withdrawn pods run OLD, so they count as updated now.
    assert (p.status.updated, p.status.upgrading) == (6, 0)
    assert cond(p, ConditionType.COMPLETE) == (True, "AllPodsUpdated")
    # The step machine drops the records (tests/unit/controller/test_swap_hold_steps.py): nothing failed
    # on OLD, nothing started, the release completes.
    after = [_tick(x, {}) for x in _apply(p, pods)]
    assert [x.record for x in after[2:5]] == [None, None, None]
    assert all(x.swap_hold is None and x.target is None for x in after[2:5])
    done_plan = plan(r, after)
    assert (done_plan.starts, done_plan.lifts, done_plan.withdrawals) == ((), (), ())
    assert done_plan.status.failed == 0 and done_plan.status.updated == 6
    assert cond(done_plan, ConditionType.COMPLETE) == (True, "AllPodsUpdated")


def test_edited_to_another_image_held_pods_are_withdrawn_then_started_toward_it() -> None:
    pods = [holding("web-0"), holding("web-1", phase=Phase.PENDING), pod("web-2")]
    p = plan(release(NEWER, max_unavailable=IntOrPercent(2)), pods)
    assert (lifted(p), withdrew(p)) == ([], ["web-0", "web-1"])
    assert started(p) == []  # their holds still take the room until the step machine drops them
    after = [_tick(x, {}) for x in _apply(p, pods)]
    again = plan(release(NEWER, max_unavailable=IntOrPercent(2)), after)
    assert started(again) == ["web-0", "web-1"] and all(s.hold for s in again.starts)


def test_an_unheld_queued_pod_is_never_retargeted_onto_the_image_it_runs() -> None:
    queued = pod("web-0", target=NEW)  # queued by hand toward NEW; the release says OLD, which it runs
    p = plan(release(OLD), [queued, pod("web-1")])
    assert p.starts == () and p.withdrawals == (Withdrawal("shop", "web-0", NEW, target=True, hold=False),)


def test_held_pods_past_the_partition_are_withdrawn_not_lifted() -> None:
    """The partition grew while pods were held: the plan would not start them now."""
    pods = [done("web-0"), holding("web-1"), holding("web-2"), pod("web-3")]
    p = plan(release(max_unavailable=IntOrPercent(2), partition=IntOrPercent(2)), pods)
    assert (lifted(p), withdrew(p), started(p)) == (["web-1"], ["web-2"], [])


def test_the_status_of_a_plan_that_withdraws_counts_its_pods_as_never_queued() -> None:
    """`partition: 3` while the three pods are held: all withdrawn, and the status written with that plan
    says so (none upgrading, the partition reached), as it counts its own starts as upgrading; `pods`
    keeps the states the plan decided on."""
    pods = [holding("web-0"), pod("web-1", target=NEW, swap_hold=NEW), holding("web-2", ready=False)]
    p = plan(release(max_unavailable=IntOrPercent(3), partition=IntOrPercent(3)), pods)
    assert withdrew(p) == ["web-0", "web-1", "web-2"] and (started(p), lifted(p)) == ([], [])
    assert set(p.pods.values()) == {PodState.UPGRADING}
    assert (p.status.matched, p.status.updated, p.status.upgrading) == (3, 0, 0)
    assert cond(p, ConditionType.COMPLETE) == (True, "PartitionReached")
    assert after_withdrawal(pods[2], NEW) is PodState.NOT_READY
    assert after_withdrawal(pods[0], OLD) is PodState.UPDATED
    # A retried Failed pod withdrawn: Waiting in this plan's status (its failures are the ones it decided
    # on), Failed again from the next plan on.
    retried = replace(failed("web-0"), retry="again", swap_hold=NEW)
    q = plan(release(partition=IntOrPercent(1)), [retried])
    assert (withdrew(q), q.status.failed, q.status.upgrading) == (["web-0"], 0, 0)
    assert after_withdrawal(retried, NEW) is PodState.WAITING


def test_withdrawn_keeps_held_pods_the_plan_would_start() -> None:
    pods = [holding("web-0"), holding("web-1"), holding("web-2", to=NEWER)]
    assert withdrawn(pods, image=NEW, stopped=False, room=5) == [pods[2]]
    # Withdrawn before (target removed, record still there): never lifted, even if the spec came back.
    dropping = replace(holding("web-0"), target=None)
    assert withdrawn([dropping], image=NEW, stopped=False, room=5) == [dropping]
    p = plan(release(), [dropping])
    assert lifted(p) == [] and p.withdrawals == (Withdrawal("shop", "web-0", NEW, target=False, hold=False),)
    assert withdrawn(pods, image=NEW, stopped=False, room=1) == pods[1:]
    assert withdrawn(pods, image=NEW, stopped=True, room=5) == pods


# --- rollout speed: the at-risk window ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "ready", "risky"),
    [
        (Phase.PENDING, True, True),
        (Phase.PRE_PULLING, True, True),  # about to swap: budget reserved
        (Phase.TAKING_OVER, True, True),
        (Phase.ROLLING_BACK, True, True),
        (Phase.DRAINING, True, False),  # new Envoy serves, pod Ready: the next batch may start
        (Phase.RESETTING, True, False),
        (Phase.DRAINING, False, True),
        (Phase.RESETTING, False, True),
        (Phase.COMPLETED, True, False),
    ],
)
def test_a_pod_is_at_risk_from_queue_to_take_over(phase: Phase, ready: bool, risky: bool) -> None:
    # Without a hold (a per-pod target, or set by an older controller) nothing stops its swap.
    facts = in_flight("web-0", phase, ready=ready, image=NEW if phase is Phase.COMPLETED else OLD)
    assert at_risk(facts) is risky and not held(facts)
    expected = [] if risky else ["web-1"]
    assert lifted(plan(release(), [facts, holding("web-1")])) == expected


@pytest.mark.parametrize(
    ("phase", "ready", "risky"),
    [
        (None, True, False),  # queued with the hold: checks and pre-pull change no container
        (Phase.PENDING, True, False),
        (Phase.PRE_PULLING, True, False),
        (Phase.PRE_PULLING, False, True),  # not Ready counts, held or not
        (Phase.TAKING_OVER, True, True),  # from the swap (a lifted hold, or one left behind)
        (Phase.ROLLING_BACK, True, True),
        (Phase.DRAINING, True, False),
        (Phase.DRAINING, False, True),
    ],
)
def test_a_held_pod_is_at_risk_only_from_its_swap(phase: Phase | None, ready: bool, risky: bool) -> None:
    record = None if phase is None else upgrade_record(phase=phase, to_image=NEW)
    facts = pod("web-0", ready=ready, target=NEW, record=record, swap_hold=NEW)
    assert at_risk(facts) is risky
    assert held(facts) is (phase in (None, Phase.PENDING, Phase.PRE_PULLING))
    p = plan(release(), [facts, holding("web-1")])
    assert lifted(p) == ([] if risky else ["web-1"])  # web-1 waits at its swap: lifted before web-0


def test_a_hold_on_another_image_holds_nothing() -> None:
    facts = pod(
        "web-0", target=NEWER, record=upgrade_record(phase=Phase.PRE_PULLING, to_image=NEWER), swap_hold=NEW
    )
    assert not held(facts) and at_risk(facts)


def test_rollout_speed_pre_pulls_overlap_the_swaps() -> None:
    """Issue 14: 4 pods at maxUnavailable 1. At most one pod swaps at a time and one more pre-pulls;
    each pod's pre-pull overlaps the previous pod's swap, its drain the next pod's swap."""
    pods, ticks, most, risky = _run_counting(release(), fleet(4))
    assert all(x.status is not None and x.status.sidecar_image == NEW for x in pods)
    assert (most["at_risk"], most["held"]) == (1, 1) and most["in_flight"] >= 3
    # Each pod is at risk for 2 ticks (lifted at its swap, then taking over), not from its queueing (5:
    # queued, Pending, PrePulling, waiting, TakingOver): the next pod's checks and pre-pull overlap it.
    assert risky == {f"shop/web-{i}": 2 for i in range(4)}
    assert ticks == 4 * 3 + 1 + DRAIN_TICKS + 2  # 3 per pod, then the last one's swap, drain and reset


def test_queued_target_counts_before_the_controller_acts() -> None:
    queued = pod("web-0", target=NEW)  # annotated without a hold, no record yet: it may swap at any time
    assert at_risk(queued) and not held(queued)
    p = plan(release(), [queued, holding("web-1"), pod("web-2")])
    assert p.pods["shop/web-0"] is PodState.UPGRADING and lifted(p) == [] and started(p) == []


def test_drains_overlap_the_next_batch() -> None:
    pods = [in_flight(f"web-{i}", Phase.DRAINING) for i in range(3)] + [pod("web-3"), pod("web-4")]
    p = plan(release(), pods)
    assert started(p) == ["web-3"] and p.status.upgrading == 4


# --- unready pods ------------------------------------------------------------------------------------


def test_unready_pods_count_against_the_budget_and_are_not_started() -> None:
    pods = [pod("web-0", ready=False), holding("web-1"), holding("web-2"), pod("web-3")]
    p = plan(release(max_unavailable=IntOrPercent(2)), pods)
    assert lifted(p) == ["web-1"] and started(p) == ["web-3"] and p.unavailable == 1
    assert p.pods["shop/web-0"] is PodState.NOT_READY
    blocked = plan(release(), pods)
    assert lifted(blocked) == [] and started(blocked) == []
    progressing = blocked.status.condition(ConditionType.PROGRESSING)
    assert progressing is not None and "1 unavailable, maxUnavailable 1" in progressing.message
    # Held toward an older image (finishing it) and not lifted: nothing upgrades, the status says why.
    waiting = plan(release(), [pod("web-0", ready=False), holding("web-1", to=NEWER), pod("web-2")])
    assert lifted(waiting) == [] and started(waiting) == []
    assert cond(waiting, ConditionType.PROGRESSING) == (True, "WaitingForAvailability")


def test_an_updated_unready_pod_also_counts() -> None:
    pods = [done("web-0", ready=False), holding("web-1")]
    p = plan(release(), pods)
    assert lifted(p) == [] and p.unavailable == 1
    assert p.status.updated == 1 and p.status.updated_ready == 0 and p.status.ready == 1


def test_only_unready_pods_left_waits_for_them() -> None:
    p = plan(release(max_unavailable=IntOrPercent(3)), [done("web-0"), pod("web-1", ready=False)])
    assert started(p) == []
    status, reason = cond(p, ConditionType.PROGRESSING)
    assert (status, reason) == (True, "WaitingForPods")
    progressing = p.status.condition(ConditionType.PROGRESSING)
    assert progressing is not None and "shop/web-1" in progressing.message


# --- partition ---------------------------------------------------------------------------------------


def test_partition_keeps_pods_on_the_previous_image() -> None:
    r = release(max_unavailable=IntOrPercent(6), partition=IntOrPercent(3))
    first = plan(r, fleet(6))
    assert started(first) == ["web-0", "web-1", "web-2"]
    halfway = [done("web-0"), done("web-1"), in_flight("web-2", Phase.TAKING_OVER), *fleet(6)[3:]]
    assert started(plan(r, halfway)) == []
    reached = plan(r, [done("web-0"), done("web-1"), done("web-2"), *fleet(6)[3:]])
    assert started(reached) == []
    assert cond(reached, ConditionType.COMPLETE) == (True, "PartitionReached")
    assert cond(reached, ConditionType.PROGRESSING) == (False, "RolloutComplete")
    lowered = plan(
        replace(r, spec=replace(r.spec, strategy=Strategy(max_unavailable=IntOrPercent(6)))),
        [done("web-0"), done("web-1"), done("web-2"), *fleet(6)[3:]],
    )
    assert started(lowered) == ["web-3", "web-4", "web-5"]


def test_partition_is_a_count_so_new_pods_do_not_shift_it() -> None:
    r = release(max_unavailable=IntOrPercent(9), partition=IntOrPercent(3))
    pods = [done(f"web-{i}") for i in range(3)] + [pod(f"web-{i}") for i in range(3, 9)]
    assert started(plan(r, pods)) == ["web-3", "web-4", "web-5"]  # 9 matched, 3 stay


def test_complete_when_all_updated() -> None:
    p = plan(release(), [done("web-0"), done("web-1")])
    assert p.starts == () and cond(p, ConditionType.COMPLETE) == (True, "AllPodsUpdated")
    assert cond(p, ConditionType.DEGRADED) == (False, "NoFailures")
    assert cond(p, ConditionType.PAUSED) == (False, "NotPaused")
    assert (p.status.updated, p.status.updated_ready, p.status.ready) == (2, 2, 2)


def test_no_pods() -> None:
    assert cond(plan(release(), []), ConditionType.COMPLETE) == (True, "NoMatchedPods")


# --- pause and failures ------------------------------------------------------------------------------


def test_paused_starts_nothing_and_lets_in_flight_finish() -> None:
    pods = [in_flight("web-0", Phase.TAKING_OVER), *fleet(3)[1:]]
    p = plan(release(max_unavailable=IntOrPercent(3), paused=True), pods)
    assert p.starts == () and p.status.upgrading == 1
    assert cond(p, ConditionType.PAUSED) == (True, "PausedBySpec")
    assert cond(p, ConditionType.PROGRESSING) == (True, "RollingOut")
    idle = plan(release(paused=True), fleet(2))
    assert cond(idle, ConditionType.PROGRESSING) == (False, "PausedBySpec")


def test_failures_below_max_failures_degrade_but_continue() -> None:
    pods = [failed("web-0"), *fleet(3)[1:]]
    p = plan(release(max_failures=2), pods)
    assert started(p) == ["web-1"] and p.status.failed == 1
    assert cond(p, ConditionType.DEGRADED) == (True, "UpgradesFailed")
    assert cond(p, ConditionType.PAUSED) == (False, "NotPaused")
    assert p.pods["shop/web-0"] is PodState.FAILED  # not retried: no retry storm


def test_max_failures_pauses_with_degraded() -> None:
    pods = [failed("web-0"), failed("web-1"), in_flight("web-2", Phase.DRAINING), *fleet(5)[3:]]
    p = plan(release(max_unavailable=IntOrPercent(3), max_failures=2), pods)
    assert p.starts == ()
    assert cond(p, ConditionType.PAUSED) == (True, "TooManyFailures")
    assert cond(p, ConditionType.DEGRADED) == (True, "TooManyFailures")
    assert cond(p, ConditionType.PROGRESSING) == (True, "RollingOut")  # web-2 still finishes
    message = p.status.condition(ConditionType.DEGRADED)
    assert message is not None and "shop/web-0, shop/web-1" in message.message
    settled = plan(release(max_failures=2), [failed("web-0"), failed("web-1"), done("web-2"), pod("web-3")])
    assert cond(settled, ConditionType.PROGRESSING) == (False, "TooManyFailures")


def test_only_failures_left() -> None:
    p = plan(release(max_failures=3), [failed("web-0"), done("web-1")])
    assert cond(p, ConditionType.COMPLETE) == (False, "UpgradesFailed")
    assert cond(p, ConditionType.PROGRESSING) == (False, "UpgradesFailed")


def test_a_retry_counts_as_in_flight() -> None:
    retried = replace(failed("web-0"), retry="r2")  # the retry swaps without asking: at risk
    p = plan(release(), [retried, holding("web-1")])
    assert p.pods["shop/web-0"] is PodState.UPGRADING and at_risk(retried) and lifted(p) == []


# --- overlapping releases ----------------------------------------------------------------------------


def test_overlap_goes_to_higher_priority_and_the_loser_reports_it() -> None:
    front = LabelSelector((Requirement("tier", "In", frozenset({"front"})),))
    low = release(name="all-web", selector=WEB)
    high = release(NEWER, name="front", selector=front, priority=10)
    pods = [pod("web-0", labels={"app": "web", "tier": "front"}), pod("web-1")]
    result = plan_fleet([low, high], pods, {}, now=T0)
    assert result.owners == {"shop/web-0": "front", "shop/web-1": "all-web"}
    assert result.releases["front"].starts == (Start("shop", "web-0", NEWER),)
    assert result.releases["all-web"].starts == (Start("shop", "web-1", NEW),)
    assert result.releases["all-web"].status.overlaps == (Overlap("front", 10, 1),)
    assert result.releases["front"].status.overlaps == ()
    assert result.releases["all-web"].status.matched == 1


def test_equal_priority_overlap_goes_to_the_first_name() -> None:
    a, b = release(name="b-release"), release(NEWER, name="a-release")
    result = plan_fleet([a, b], [pod("web-0")], {}, now=T0)
    assert result.owners == {"shop/web-0": "a-release"}
    assert result.releases["b-release"].status.overlaps == (Overlap("a-release", 0, 1),)
    assert owning_release([a, b], {"app": "web"}, {}) == b
    assert owning_release([a, b], {"app": "api"}, {}) is None


def test_namespace_selector() -> None:
    team = LabelSelector((Requirement("team", "==", frozenset({"shop"})),))
    r = replace(release(), spec=replace(release().spec, namespace_selector=team))
    pods = [pod("web-0"), pod("web-1", namespace="other")]
    result = plan_fleet([r], pods, {"shop": {"team": "shop"}, "other": {"team": "x"}}, now=T0)
    assert result.owners == {"shop/web-0": "web"}


def test_uninjected_and_terminating_pods_are_not_governed() -> None:
    bare = replace(pod("web-0"), status=None)
    going = replace(pod("web-1"), deleting=True)
    p = plan(release(), [bare, going, pod("web-2")])
    assert list(p.pods) == ["shop/web-2"] and p.status.matched == 1


# --- retargeting and rollback ------------------------------------------------------------------------


def test_retarget_mid_rollout() -> None:
    pods = [
        in_flight("web-0", Phase.TAKING_OVER),  # touched: finishes its step to NEW first
        in_flight("web-1", Phase.DRAINING),
        pod("web-2", target=NEW),  # queued, untouched: retargeted at no budget cost
        in_flight("web-3", Phase.PENDING),  # Pending: untouched too
        pod("web-4"),
    ]
    p = plan(release(NEWER, max_unavailable=IntOrPercent(3)), pods)
    states = {k.split("/")[1]: s for k, s in p.pods.items()}
    assert states["web-0"] is PodState.FINISHING and states["web-1"] is PodState.FINISHING
    assert states["web-2"] is PodState.QUEUED_ELSEWHERE
    assert p.starts == (  # web-2 and web-3 were queued without a hold: they stay so (and at risk)
        Start("shop", "web-2", NEWER, retarget=True, hold=False),
        Start("shop", "web-3", NEWER, retarget=True, hold=False),
        Start("shop", "web-4", NEWER),  # held: pre-pulls while the others take the budget
    )
    assert p.unavailable == 3  # web-0, web-2, web-3 (queued without a hold); web-1 serves on its new Envoy
    # web-0 and web-1 finished on NEW: now they move on like any pod
    later = plan(
        release(NEWER, max_unavailable=IntOrPercent(3)), [done("web-0"), done("web-1"), pod("web-4")]
    )
    assert started(later) == ["web-0", "web-1", "web-4"]


def test_user_one_off_upgrade_on_a_selected_pod_is_converged_back() -> None:
    one_off = pod("web-0", target=NEWER)  # someone annotated it by hand
    p = plan(release(), [one_off])
    assert p.starts == (Start("shop", "web-0", NEW, retarget=True, hold=False),)  # at risk, as it was


def test_rollback_is_a_spec_edit_back() -> None:
    history = ReleaseStatus(image=NEW, previous_images=(OLD,))
    r = release(OLD, status=history)
    pods = [done("web-0"), done("web-1"), failed("web-2"), pod("web-3")]  # web-2 rolled back to OLD
    p = plan(r, pods)
    assert started(p) == ["web-0"]
    assert p.pods["shop/web-2"] is PodState.UPDATED and p.pods["shop/web-3"] is PodState.UPDATED
    assert p.status.failed == 0 and p.status.previous_images == (NEW,)
    assert cond(p, ConditionType.DEGRADED) == (False, "NoFailures")


def test_previous_images_most_recent_first_and_bounded() -> None:
    older = tuple(f"registry.local/hotupgrade-sidecar:0.{i}" for i in range(12))
    r = release(NEWER, status=ReleaseStatus(image=NEW, previous_images=(OLD, *older)))
    p = plan(r, [pod("web-0"), pod("web-1", image=NEWER)])
    assert p.status.previous_images[:3] == (NEW, OLD, older[0]) and len(p.status.previous_images) == 10
    first = plan(release(NEWER), [pod("web-0"), pod("web-1"), pod("web-2", image=NEW)])
    assert first.status.previous_images == (OLD, NEW)  # what pods ran, most common first


# --- status bookkeeping ------------------------------------------------------------------------------


def test_condition_times_move_only_on_flips() -> None:
    first = plan(release(), fleet(2)).status
    later = T0 + timedelta(minutes=5)
    again = plan_fleet(
        [release(status=first)], [in_flight("web-0", Phase.DRAINING), pod("web-1")], {}, now=later
    )
    status = again.releases["web"].status
    progressing, complete = (
        status.condition(ConditionType.PROGRESSING),
        status.condition(ConditionType.COMPLETE),
    )
    assert progressing is not None and progressing.since == T0 and progressing.observed_generation == 2
    finished = plan_fleet([release(status=status)], [done("web-0"), done("web-1")], {}, now=later).releases[
        "web"
    ]
    flipped = finished.status.condition(ConditionType.COMPLETE)
    assert complete is not None and complete.since == T0
    assert flipped is not None and flipped.status and flipped.since == later
    wire = finished.status.to_json()
    assert wire["observedGeneration"] == 2 and wire["image"] == NEW
    assert [c["type"] for c in wire["conditions"]] == ["Progressing", "Paused", "Complete", "Degraded"]


def test_invalid_spec_status() -> None:
    old = plan(release(), fleet(1)).status
    status = invalid_spec_status(
        old, generation=3, why="spec.image: must be a non-empty image reference", now=T0
    )
    degraded = status.condition(ConditionType.DEGRADED)
    assert degraded is not None and degraded.status and degraded.reason == "InvalidSpec"
    assert status.observed_generation == 3 and status.matched == old.matched


def test_pod_facts_from_a_raw_pod() -> None:
    raw = raw_pod(record=upgrade_record(phase=Phase.DRAINING))
    raw["metadata"]["labels"] = {"app": "web"}
    facts = pod_facts(raw)
    assert (facts.key, facts.ready, facts.target, facts.labels) == ("shop/web-1", True, NEW, {"app": "web"})
    assert facts.record is not None and facts.record.phase is Phase.DRAINING and facts.status == STATUS
    raw["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = ""
    raw["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    bare = pod_facts(raw)
    assert bare.target is None and bare.deleting


# --- properties ---------------------------------------------------------------------------------------

PHASES = [None, *Phase]
IMAGES = [OLD, NEW, NEWER]


@st.composite
def random_pod(draw: st.DrawFn, index: int) -> PodFacts:
    phase = draw(st.sampled_from(PHASES))
    record = None
    if phase is not None:
        record = upgrade_record(phase=phase, to_image=draw(st.sampled_from(IMAGES)))
    return PodFacts(
        namespace="shop",
        name=f"web-{index:02d}",
        labels={"app": "web"},
        ready=draw(st.booleans()),
        status=replace(STATUS, sidecar_image=draw(st.sampled_from(IMAGES))),
        record=record,
        target=draw(st.sampled_from([None, *IMAGES])),
        retry=draw(st.sampled_from([None, "r"])),
        swap_hold=draw(st.sampled_from([None, *IMAGES])),
    )


@st.composite
def random_fleet(draw: st.DrawFn) -> tuple[Release, list[PodFacts]]:
    n = draw(st.integers(0, 25))
    pods = [draw(random_pod(i)) for i in range(n)]
    percent = draw(st.booleans())
    value = draw(st.integers(1, 100)) if percent else draw(st.integers(1, 8))
    partition = (
        IntOrPercent(draw(st.integers(0, 100)), percent=True)
        if draw(st.booleans())
        else IntOrPercent(draw(st.integers(0, 10)))
    )
    r = release(
        draw(st.sampled_from(IMAGES)),
        max_unavailable=IntOrPercent(value, percent=percent),
        partition=partition,
        paused=draw(st.booleans()),
        max_failures=draw(st.integers(1, 4)),
    )
    return r, pods


def _touched(p: PodFacts) -> bool:
    return p.record is not None and p.record.in_flight and p.record.phase is not Phase.PENDING


@settings(max_examples=400, deadline=None)
@given(random_fleet())
def test_never_more_at_risk_than_allowed_and_one_upgrade_per_pod(
    case: tuple[Release, list[PodFacts]],
) -> None:
    r, pods = case
    p = plan_release(r, pods, now=T0)
    by_key = {x.key: x for x in pods}
    keys = [s.key for s in p.starts]
    assert len(keys) == len(set(keys))  # one start per pod
    if r.spec.strategy.paused or p.status.failed >= r.spec.strategy.max_failures:
        assert p.starts == ()
    for start in p.starts:
        target = by_key[start.key]
        assert not _touched(target)  # never a second upgrade beside one that changed the pod
        assert start.image == r.spec.image
        assert start.retarget == (heading_to(target) is not None)  # only queued pods are retargeted
    lifts = [x.key for x in p.lifts]
    assert len(lifts) == len(set(lifts)) and not set(lifts) & set(keys)
    gone = [x.key for x in p.withdrawals]
    assert len(gone) == len(set(gone)) and not set(gone) & (set(keys) | set(lifts))
    stopped = stopped_on_failures(r.spec.strategy, p.status.failed)
    for lift in p.lifts:
        target = by_key[lift.key]
        assert held(target) and target.ready and lift.image == target.swap_hold  # only before its swap
        assert not stopped and heading_to(target) == r.spec.image  # only what the plan would start now
    for withdrawal in p.withdrawals:
        target = by_key[withdrawal.key]
        assert not touched(target) or held(target)  # never an upgrade past its swap
        assert withdrawal.image == heading_to(target)
    if stopped:
        assert not [x for x in pods if held(x) and x.key not in gone]  # none left held toward the image
    # Apply the plan as the controller would (lifts drop the hold; starts set target and hold), then
    # count again: never more at risk, nor more held, than maxUnavailable (unless there were already).
    after = _apply(p, pods)
    risk_before = sum(1 for x in pods if at_risk(x))
    risk_after = sum(1 for x in after if at_risk(x))
    assert risk_after <= max(p.allowed_unavailable, risk_before)
    held_before = sum(1 for x in pods if held(x))
    assert sum(1 for x in after if held(x)) <= max(p.allowed_unavailable, held_before)
    # Never beyond the partition: pods heading to or on the image stay within matched - partition,
    # unless they were there already.
    goal = len(pods) - held_back(r.spec.strategy, len(pods))
    on_or_heading = [x for x in after if p.pods[x.key] is not PodState.FAILED]
    counted = (
        sum(
            1
            for x in on_or_heading
            if x.key in keys or p.pods[x.key] in (PodState.UPDATED, PodState.UPGRADING)
        )
        + p.status.failed
    )
    before = sum(1 for s in p.pods.values() if s in (PodState.UPDATED, PodState.UPGRADING, PodState.FAILED))
    assert counted <= max(goal, before)


# --- a whole rollout against a toy of the step machine -------------------------------------------------

DRAIN_TICKS = 5


def _tick(p: PodFacts, drained: dict[str, int], *, broken: str = "") -> PodFacts:
    """One reconcile of the step machine, coarsely: queued -> Pending -> PrePulling, which waits while the
    release holds the swap -> TakingOver (NotReady) -> Draining (DRAIN_TICKS, Ready on the new Envoy) ->
    Resetting -> Completed; toward `broken`, TakingOver -> RollingBack (NotReady) -> Failed (Ready on the
    old Envoy). A held upgrade whose target is gone is dropped (withdrawn)."""
    record = p.record
    if (
        record is not None
        and record.phase in (Phase.PENDING, Phase.PRE_PULLING)
        and p.swap_hold == record.to_image != p.target
    ):
        return replace(p, record=None, swap_hold=None)  # withdrawn by its release (controller.steps)
    heading = heading_to(p)
    if heading is None:
        return p
    if record is None or not record.in_flight or record.to_image != heading:
        return replace(p, record=upgrade_record(phase=Phase.PENDING, to_image=heading, from_image=OLD))
    if record.phase is Phase.PRE_PULLING and p.swap_hold == record.to_image:
        waiting = f"{SWAP_WAIT} to {record.to_image} (maxUnavailable)"  # pre-pulled; waits for the release
        return replace(p, record=replace(record, message=waiting))
    following = {
        Phase.PENDING: Phase.PRE_PULLING,
        Phase.PRE_PULLING: Phase.TAKING_OVER,
        Phase.TAKING_OVER: Phase.DRAINING,
        Phase.RESETTING: Phase.COMPLETED,
    }
    if record.to_image == broken and record.phase in (Phase.TAKING_OVER, Phase.ROLLING_BACK):
        rolled_back = record.phase is Phase.ROLLING_BACK
        return replace(
            p,
            record=replace(record, phase=Phase.FAILED if rolled_back else Phase.ROLLING_BACK),
            ready=rolled_back,
        )
    if record.phase is Phase.DRAINING:
        drained[p.key] = drained.get(p.key, 0) + 1
        if drained[p.key] < DRAIN_TICKS:
            return p
        drained.pop(p.key)
        return replace(p, record=replace(record, phase=Phase.RESETTING))
    phase = following[record.phase]
    moved = replace(p, record=replace(record, phase=phase), ready=phase is not Phase.TAKING_OVER)
    if phase is Phase.COMPLETED:
        assert moved.status is not None
        moved = replace(moved, status=replace(moved.status, sidecar_image=record.to_image))
    return moved


def _apply(p: ReleasePlan, pods: list[PodFacts]) -> list[PodFacts]:
    """The plan's patches as the release reconciler writes them: lifts drop the hold, withdrawals the
    target and (no record left to drop) the hold, starts set the target with its hold (or, retargeting a
    pod queued without one, none)."""
    lifts = {x.key for x in p.lifts}
    targets = {s.key: s.image for s in p.starts}
    pods = [replace(x, swap_hold=None) if x.key in lifts else x for x in pods]
    gone = {w.key: w for w in p.withdrawals}
    pods = [
        replace(
            x,
            target=None if gone[x.key].target else x.target,
            swap_hold=None if gone[x.key].hold else x.swap_hold,
        )
        if x.key in gone
        else x
        for x in pods
    ]
    holds = {s.key for s in p.starts if s.hold}
    return [
        replace(x, target=targets[x.key], swap_hold=targets[x.key] if x.key in holds else None)
        if x.key in targets
        else x
        for x in pods
    ]


def _run_counting(
    r: Release, pods: list[PodFacts], *, limit: int = 200
) -> tuple[list[PodFacts], int, dict[str, int], Counter[str]]:
    """Plan, apply, tick every pod; until the release is Complete. Checks the budget and the held bound
    after every plan; returns the pods, the ticks, the most pods at risk, held and in flight at once, and
    per pod the ticks it was at risk."""
    drained: dict[str, int] = {}
    most = {"at_risk": 0, "held": 0, "in_flight": 0}
    risky: Counter[str] = Counter()
    for tick in range(limit):
        p = plan(r, pods)
        assert sum(1 for x in pods if at_risk(x)) <= max(p.allowed_unavailable, 0)
        pods = _apply(p, pods)
        risky.update(x.key for x in pods if at_risk(x))
        counts = {
            "at_risk": sum(1 for x in pods if at_risk(x)),
            "held": sum(1 for x in pods if held(x)),
            "in_flight": sum(1 for x in pods if heading_to(x) is not None),
        }
        assert counts["at_risk"] <= p.allowed_unavailable
        assert counts["held"] <= p.allowed_unavailable
        most = {k: max(v, counts[k]) for k, v in most.items()}
        complete = p.status.condition(ConditionType.COMPLETE)
        if complete is not None and complete.status and not p.starts:
            return pods, tick, most, risky
        pods = [_tick(x, drained) for x in pods]
    raise AssertionError("the rollout did not converge")


def _run(r: Release, pods: list[PodFacts], *, limit: int = 200) -> tuple[list[PodFacts], int]:
    pods, ticks, _, _ = _run_counting(r, pods, limit=limit)
    return pods, ticks


def test_canary_then_all_then_scale_up_converges_within_the_budget() -> None:
    canary = release(partition=IntOrPercent(3))
    pods, ticks = _run(canary, fleet(6))
    on_new = sorted(x.name for x in pods if x.status is not None and x.status.sidecar_image == NEW)
    assert on_new == ["web-0", "web-1", "web-2"]
    # Drains overlap the next batch: far below one pod after another (4 + DRAIN_TICKS ticks each).
    assert ticks < 3 * (4 + DRAIN_TICKS)
    scaled = pods + [pod(f"web-{i}", image=NEW) for i in range(6, 9)]  # new pods injected with NEW
    pods, _ = _run(release(), scaled)
    assert all(x.status is not None and x.status.sidecar_image == NEW for x in pods)
    assert all(x.record is None or not x.record.in_flight for x in pods)


def test_retarget_mid_rollout_converges_to_the_last_image() -> None:
    pods = fleet(4)
    drained: dict[str, int] = {}
    for _ in range(3):  # part way to NEW
        pods = [_tick(x, drained) for x in _apply(plan(release(max_unavailable=IntOrPercent(2)), pods), pods)]
    assert any(touched(x) for x in pods)
    pods, _ = _run(release(NEWER, max_unavailable=IntOrPercent(2)), pods)
    assert all(x.status is not None and x.status.sidecar_image == NEWER for x in pods)


def test_a_broken_image_stops_within_the_failure_bound_then_rolls_back_without_a_failure() -> None:
    """The release e2e's broken_then_rollback on the toy: every take-over of BROKEN fails. The release
    stops at maxFailures with at most maxUnavailable - 1 more failed (those past their swap), nothing held
    or in flight; the rollback to OLD (the image every pod runs) upgrades nothing and fails nothing."""
    broken = "registry.local/hotupgrade-sidecar:broken"
    r = release(broken, max_unavailable=IntOrPercent(2), max_failures=2)
    pods, drained = fleet(9), dict[str, int]()
    for _ in range(40):
        p = plan(r, pods)
        assert sum(1 for x in pods if at_risk(x)) <= 2
        pods = [_tick(x, drained, broken=broken) for x in _apply(p, pods)]
    failed_pods = [x.name for x in pods if x.record is not None and x.record.phase is Phase.FAILED]
    assert 2 <= len(failed_pods) <= 2 + 2 - 1, failed_pods
    assert all(x.record is None for x in pods if x.name not in failed_pods), "withdrawn, not failed"
    assert not [x.name for x in pods if x.swap_hold is not None or (x.name not in failed_pods and x.target)]
    stopped = plan(r, pods)
    assert (stopped.status.failed, stopped.status.upgrading) == (len(failed_pods), 0)
    assert cond(stopped, ConditionType.PROGRESSING) == (False, "TooManyFailures")
    back = release(OLD, status=stopped.status, max_unavailable=IntOrPercent(2), max_failures=2)
    before = [x.record for x in pods]
    pods, _ = _run(back, pods)
    assert [x.record for x in pods] == before, "the rollback upgraded or failed nothing"
    final = plan(back, pods)
    assert (final.status.failed, final.status.updated) == (0, 9)
    assert cond(final, ConditionType.DEGRADED) == (False, "NoFailures")


# --- what the conditions say (a user acts on these words) ---------------------------------------------


def message(p: ReleasePlan, kind: ConditionType) -> str:
    found = p.status.condition(kind)
    assert found is not None
    return found.message


def test_a_partition_raised_after_pods_moved_counts_the_pods_not_the_partition() -> None:
    # 3 of 6 moved, then partition 5: nothing moves back, and the message must not say 5 stay.
    pods = [done(f"web-{i}") for i in range(3)] + fleet(6)[3:]
    p = plan(release(partition=IntOrPercent(5)), pods)
    assert cond(p, ConditionType.COMPLETE) == (True, "PartitionReached") and p.starts == ()
    assert message(p, ConditionType.COMPLETE) == (
        f"3 of 6 pods run {NEW} (the partition asks for 1); the other 3 keep their image"
    )


def test_the_pods_to_go_are_counted_after_the_plans_withdrawals() -> None:
    """Rolled back onto OLD with one pod held toward NEW: withdrawn, it runs OLD, so 1 of 2 pods is left,
    not the 2 the quota saw before the withdrawal."""
    history = ReleaseStatus(image=NEW, previous_images=(OLD,))
    r = release(OLD, status=history, max_unavailable=IntOrPercent(1))
    pods = [done("web-0", to=NEW), holding("web-1")]
    p = plan(r, pods)
    assert withdrew(p) == ["web-1"] and p.starts == ()
    assert (p.status.updated, p.status.upgrading) == (1, 0)
    progressing = message(p, ConditionType.PROGRESSING)
    assert progressing.startswith("1 pod(s) to go; waiting for room (0 unavailable, maxUnavailable 1, "), (
        progressing
    )
    assert "1 held before their swap" in progressing  # what takes the room: the hold not yet dropped


def test_a_release_with_no_pods_names_the_watched_namespaces() -> None:
    assert "in the namespaces the controller watches" in message(plan(release(), []), ConditionType.COMPLETE)


def test_too_many_failures_says_how_to_retry() -> None:
    p = plan(release(), [failed("web-0"), pod("web-1")])
    assert "`hotupgrade retry -n NAMESPACE POD...`" in message(p, ConditionType.PAUSED)


# --- held upgrades no release governs -----------------------------------------------------------------


def test_held_upgrades_no_release_selects_are_withdrawn() -> None:
    """The release deleted, its selector edited or the pod relabelled while pods were held: nothing would
    ever lift them. Withdrawn like any held pod; one still selected, or past its swap, is left alone."""
    queued = pod("web-0", target=NEW, swap_hold=NEW)  # the step machine has not acted yet
    relabelled = replace(holding("web-1"), labels={"app": "shop"})
    selected = holding("web-2")
    swapped = in_flight("web-3", Phase.TAKING_OVER)
    pods = [queued, relabelled, selected, swapped]
    # The step machine drops web-1's record and hold itself (its target gone): the release removes the target.
    assert orphaned([release()], pods, {}) == (Withdrawal("shop", "web-1", NEW, target=True, hold=False),)
    # No release at all (deleted): every held pod; the one past its swap finishes whatever.
    assert [w.name for w in orphaned([], pods, {})] == ["web-0", "web-1", "web-2"]
    # With no record to drop, the release removes the hold too.
    assert orphaned([], [queued], {}) == (Withdrawal("shop", "web-0", NEW, target=True, hold=True),)
    # A namespaceSelector that no longer matches the pod's namespace counts as not selected.
    by_ns = release(selector=LabelSelector(()))
    by_ns = replace(by_ns, spec=replace(by_ns.spec, namespace_selector=WEB))
    assert [w.name for w in orphaned([by_ns], [selected], {"shop": {"app": "web"}})] == []
    assert [w.name for w in orphaned([by_ns], [selected], {"shop": {"app": "other"}})] == ["web-2"]
