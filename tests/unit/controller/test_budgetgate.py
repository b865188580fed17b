"""The PodDisruptionBudget gate (issue 12, scenario 7): may a pod's upgrade start, given the budgets that
select it and what the other pods of its namespace are doing? Each case of the issue: minAvailable and
maxUnavailable as integers and percentages, pods already unready, an upgrade in flight elsewhere, two
budgets, none."""

from dataclasses import replace
from typing import Any

import pytest

from controller.budgetgate import ADMITTED, admit
from controller.disruption import Budget, disrupted, out_of_service, parse_budget
from controller.observed import BudgetView
from controller.record import Phase
from controller.rollout import PodFacts
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, upgrade_record


def pod(name: str, *, ready: bool = True, app: str = "web", **changes: Any) -> PodFacts:
    status = replace(STATUS, sidecar_image=OLD)
    facts = PodFacts(namespace="shop", name=name, labels={"app": app}, ready=ready, status=status)
    return replace(facts, **changes)


def upgrading(name: str, phase: Phase = Phase.TAKING_OVER) -> PodFacts:
    return pod(name, target=NEW, record=upgrade_record(phase=phase))


def queued(name: str) -> PodFacts:
    """A target set, and perhaps a Pending record: the gate has not let it start."""
    return pod(name, target=NEW, record=upgrade_record(phase=Phase.PENDING))


def pdb(spec: dict[str, Any], *, name: str = "web-pdb", app: str = "web", **status: Any) -> Budget:
    return parse_budget(
        {
            "metadata": {"namespace": "shop", "name": name, "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
            "status": status,
        }
    )


CANDIDATE = queued("web-a")  # the pod whose upgrade would start: Ready, its record Pending


def web(*others: PodFacts, candidate: PodFacts = CANDIDATE) -> list[PodFacts]:
    return [candidate, *others]


def test_no_budget_admits() -> None:
    assert admit(CANDIDATE, [], web(upgrading("web-b"), upgrading("web-c"))) == ADMITTED


def test_a_budget_of_another_workload_or_namespace_does_not_hold_the_pod() -> None:
    other_app = pdb({"maxUnavailable": 0}, name="db-pdb", app="db")
    elsewhere = replace(pdb({"maxUnavailable": 0}, name="far"), namespace="other")
    assert admit(CANDIDATE, [other_app, elsewhere], web(pod("web-b"))) == ADMITTED


def test_the_issue_example_max_unavailable_1_with_one_upgrading() -> None:
    pods = web(upgrading("web-7f9c-abcde"), pod("web-c"))
    verdict = admit(CANDIDATE, [pdb({"maxUnavailable": 1})], pods)
    assert verdict == BudgetView(
        admitted=False,
        message="PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-7f9c-abcde upgrading)",
    )
    # Once that upgrade has ended (Completed), the same budget lets the next one go.
    done = replace(pods[1], record=upgrade_record(phase=Phase.COMPLETED))
    assert admit(CANDIDATE, [pdb({"maxUnavailable": 1})], [pods[0], done, pods[2]]).admitted


@pytest.mark.parametrize(
    ("spec", "others", "admitted"),
    [
        # minAvailable, an integer: 2 of 3 must stay healthy.
        ({"minAvailable": 2}, [pod("web-b"), pod("web-c")], True),
        ({"minAvailable": 2}, [upgrading("web-b"), pod("web-c")], False),
        # minAvailable, a percentage of 4 pods rounding up: 50% -> 2 must stay healthy.
        ({"minAvailable": "50%"}, [upgrading("web-b"), pod("web-c"), pod("web-d")], True),
        ({"minAvailable": "50%"}, [upgrading("web-b"), upgrading("web-c"), pod("web-d")], False),
        # maxUnavailable, an integer.
        ({"maxUnavailable": 2}, [upgrading("web-b"), pod("web-c"), pod("web-d")], True),
        ({"maxUnavailable": 2}, [upgrading("web-b"), upgrading("web-c"), pod("web-d")], False),
        # maxUnavailable, a percentage rounding up: 25% of 4 -> 1.
        ({"maxUnavailable": "25%"}, [pod("web-b"), pod("web-c"), pod("web-d")], True),
        ({"maxUnavailable": "25%"}, [pod("web-b"), upgrading("web-c"), pod("web-d")], False),
        ({"maxUnavailable": 0}, [pod("web-b")], False),
    ],
)
def test_min_available_and_max_unavailable_as_integers_and_percentages(
    spec: dict[str, Any], others: list[PodFacts], admitted: bool
) -> None:
    assert admit(CANDIDATE, [pdb(spec)], web(*others)).admitted is admitted


def test_pods_already_unready_use_the_budget() -> None:
    verdict = admit(CANDIDATE, [pdb({"minAvailable": 2})], web(pod("web-b", ready=False), pod("web-c")))
    assert not verdict.admitted
    assert verdict.message == (
        "PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-b not Ready)"
    )
    leaving = admit(CANDIDATE, [pdb({"minAvailable": 2})], web(pod("web-b", deleting=True), pod("web-c")))
    assert "(web-b terminating)" in leaving.message


def test_every_phase_past_pending_counts_until_the_record_ends() -> None:
    for phase in (Phase.PRE_PULLING, Phase.TAKING_OVER, Phase.DRAINING, Phase.RESETTING, Phase.ROLLING_BACK):
        verdict = admit(CANDIDATE, [pdb({"minAvailable": 2})], web(upgrading("web-b", phase), pod("web-c")))
        assert not verdict.admitted, phase
    for phase in (Phase.COMPLETED, Phase.FAILED):
        pods = web(upgrading("web-b", phase), pod("web-c"))
        assert admit(CANDIDATE, [pdb({"minAvailable": 2})], pods).admitted, phase


def test_queued_upgrades_elsewhere_do_not_hold_the_gate_but_hold_a_planner() -> None:
    """Pending pods have not been let through: counting them, each would wait for the others forever.
    A planner that only queues (a SidecarRelease) counts them, so it queues no more than can start."""
    pods = web(queued("web-b"), queued("web-c"))
    assert admit(CANDIDATE, [pdb({"minAvailable": 2})], pods, counts=disrupted).admitted
    waiting = pod("web-a")  # a pod the release planner picked: no target yet
    planner = admit(waiting, [pdb({"minAvailable": 2})], [waiting, *pods[1:]], counts=out_of_service)
    assert planner == BudgetView(
        admitted=False,
        message="PodDisruptionBudget web-pdb: 2 of 1 allowed disruption(s) in use "
        "(web-b upgrade queued, web-c upgrade queued)",
    )


def test_the_candidate_is_counted_as_it_is_not_as_its_own_queued_record() -> None:
    stale = replace(CANDIDATE, record=None, target=None)  # the cache's older view of the candidate
    assert admit(CANDIDATE, [pdb({"minAvailable": 2})], [stale, pod("web-b"), pod("web-c")]).admitted


def test_two_budgets_must_both_have_room_and_each_full_one_is_named() -> None:
    wide = pdb({"maxUnavailable": 2}, name="all-pdb")
    narrow = pdb({"minAvailable": 2}, name="web-pdb")
    pods = web(upgrading("web-b"), pod("web-c"))
    verdict = admit(CANDIDATE, [narrow, wide], pods)
    assert verdict.message == (
        "PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-b upgrading)"
    )
    both = admit(CANDIDATE, [narrow, pdb({"maxUnavailable": 1}, name="all-pdb")], pods)
    assert both.message == (
        "PodDisruptionBudget all-pdb: 1 of 1 allowed disruption(s) in use (web-b upgrading); "
        "PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-b upgrading)"
    )
    assert admit(CANDIDATE, [wide], pods).admitted


def test_a_fresh_status_may_be_tighter_and_says_so() -> None:
    # The disruption controller counts the upgrading pod healthy (it is Ready): it still allows 1, and
    # that 1 is the pod upgrading.
    budget = pdb(
        {"maxUnavailable": 1}, observedGeneration=1, expectedPods=4, disruptionsAllowed=1, currentHealthy=4
    )
    verdict = admit(CANDIDATE, [budget], web(upgrading("web-b"), pod("web-c"), pod("web-d")))
    assert verdict.message.startswith("PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use")
    stale = pdb({"maxUnavailable": 2}, observedGeneration=1, expectedPods=4, disruptionsAllowed=0)
    tight = admit(CANDIDATE, [stale], web(pod("web-b"), pod("web-c"), pod("web-d")))
    assert tight.message == (
        "PodDisruptionBudget web-pdb: 0 of 2 allowed disruption(s) in use; its status allows 0 disruption(s)"
    )


def test_pods_without_a_controller_under_max_unavailable_allow_nothing_and_say_why() -> None:
    budget = pdb({"maxUnavailable": 1}, observedGeneration=1, expectedPods=0, disruptionsAllowed=0)
    verdict = admit(CANDIDATE, [budget], web(pod("web-b")))
    assert not verdict.admitted and "it expects no pods" in verdict.message


def test_many_pods_out_are_summed_up() -> None:
    others = [pod(f"web-{i}", ready=False) for i in range(5)]
    verdict = admit(CANDIDATE, [pdb({"minAvailable": 6})], web(*others))
    assert verdict.message == (
        "PodDisruptionBudget web-pdb: 5 of 0 allowed disruption(s) in use "
        "(web-0 not Ready, web-1 not Ready, web-2 not Ready and 2 more)"
    )
