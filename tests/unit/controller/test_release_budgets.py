"""A SidecarRelease whose planned starts the PodDisruptionBudget gate defers: the status says which budget
they wait for, and they are not counted as upgrading."""

from controller.budgetgate import admit
from controller.disruption import out_of_service, parse_budget
from controller.record import Phase
from controller.release_reconciler import held_back
from releaseapi.release import ConditionType, IntOrPercent
from tests.unit.controller.podfixtures import NEW
from tests.unit.controller.test_rollout import in_flight, plan, pod, release, started

BUDGET = parse_budget(
    {
        "metadata": {"namespace": "shop", "name": "web-pdb", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 3},
    }
)


def test_the_planner_picks_the_gate_defers_and_the_status_says_why() -> None:
    pods = [pod("web-0"), pod("web-1"), pod("web-2"), in_flight("web-3", Phase.DRAINING)]
    planned = plan(release(max_unavailable=IntOrPercent(2)), pods)
    assert started(planned) == ["web-0", "web-1"], "web-3 draining is free again for maxUnavailable"
    # minAvailable 3 of 4 with web-3 still upgrading: the PDB has no room for either.
    verdicts = {p.key: admit(p, [BUDGET], pods, counts=out_of_service) for p in pods[:2]}
    deferred = {key: v.message for key, v in verdicts.items() if not v.admitted}
    assert sorted(deferred) == ["shop/web-0", "shop/web-1"]
    status = held_back(planned.status, deferred, NEW)
    assert status.upgrading == planned.status.upgrading - 2 == 1
    progressing = status.condition(ConditionType.PROGRESSING)
    assert progressing is not None and progressing.status
    assert progressing.reason == "WaitingForDisruptionBudget"
    assert progressing.message == (
        f"1 pod(s) upgrading to {NEW}; 2 pod(s) held back, shop/web-0 waiting for PodDisruptionBudget "
        "web-pdb: 1 of 1 allowed disruption(s) in use (web-3 upgrading)"
    )
    before = planned.status.condition(ConditionType.PROGRESSING)
    assert before is not None and progressing.since == before.since, "still progressing: no transition"
    assert held_back(planned.status, {}, NEW) == planned.status
