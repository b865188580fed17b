"""PodDisruptionBudgets as the rollout reads them: parsing and the room left, as the disruption controller
counts it (Kubernetes v1.34.4 pkg/controller/disruption) plus hot upgrades in flight."""

from dataclasses import replace
from typing import Any

import pytest

from controller.disruption import (
    Budget,
    InvalidBudgetError,
    disrupted,
    out_of_service,
    parse_budget,
    room,
)
from controller.record import Phase
from controller.rollout import PodFacts
from releaseapi.release import IntOrPercent
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, upgrade_record


def pod(name: str, *, ready: bool = True, app: str = "web", **changes: Any) -> PodFacts:
    facts = PodFacts(
        namespace="shop",
        name=name,
        labels={"app": app},
        ready=ready,
        status=replace(STATUS, sidecar_image=OLD),
    )
    return replace(facts, **changes)


def pdb(spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> Budget:
    return parse_budget(
        {
            "metadata": {"namespace": "shop", "name": "web-pdb", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
            "status": status or {},
        }
    )


def web(n: int, **changes: Any) -> list[PodFacts]:
    return [pod(f"web-{i}", **changes) for i in range(n)]


def test_parse_int_percent_and_status() -> None:
    budget = pdb(
        {"maxUnavailable": "25%"},
        {
            "observedGeneration": 1,
            "expectedPods": 8,
            "disruptionsAllowed": 2,
            "disruptedPods": {"web-1": "t"},
        },
    )
    assert budget.max_unavailable == IntOrPercent(25, percent=True) and budget.min_available is None
    assert budget.status_fresh and budget.expected_pods == 8 and budget.disrupted_pods == {"web-1"}
    assert budget.describe() == "maxUnavailable 25%"
    assert pdb({"minAvailable": 2}).describe() == "minAvailable 2"
    assert not pdb({"minAvailable": 2}, {"observedGeneration": 1}, generation=2).status_fresh
    with pytest.raises(InvalidBudgetError, match=r"spec\.minAvailable"):
        pdb({"minAvailable": "two"})
    with pytest.raises(InvalidBudgetError, match=r"spec\.selector"):
        parse_budget({"metadata": {"name": "x"}, "spec": {"selector": {"matchLabel": {}}}})


def test_null_selector_selects_nothing_and_empty_selects_all() -> None:
    nothing = parse_budget({"metadata": {"namespace": "shop", "name": "n"}, "spec": {"minAvailable": 5}})
    assert not nothing.selects(pod("a"))
    everything = parse_budget(
        {"metadata": {"namespace": "shop", "name": "e"}, "spec": {"minAvailable": 1, "selector": {}}}
    )
    assert everything.selects(pod("a", app="other"))
    assert not everything.selects(replace(pod("a"), namespace="elsewhere"))


@pytest.mark.parametrize(
    ("spec", "pods", "desired", "allowed"),
    [
        ({"minAvailable": 3}, 4, 3, 1),
        ({"minAvailable": 4}, 4, 4, 0),
        ({"minAvailable": "50%"}, 5, 3, 2),  # 2.5 rounds up: desiredHealthy 3
        ({"maxUnavailable": 1}, 4, 3, 1),
        ({"maxUnavailable": "30%"}, 4, 2, 2),  # 1.2 rounds up to 2 unavailable
        ({"maxUnavailable": 0}, 3, 3, 0),
        ({}, 2, 0, 2),
        ({"minAvailable": 1}, 0, 1, 0),  # no pods: nothing to disrupt
    ],
)
def test_desired_and_allowed_like_the_disruption_controller(
    spec: dict[str, Any], pods: int, desired: int, allowed: int
) -> None:
    got = room(pdb(spec), web(pods))
    assert (got.desired, got.allowed, got.matched) == (desired, allowed, pods)


def test_unready_terminating_and_evicted_pods_are_not_healthy() -> None:
    pods = [*web(3), pod("sick", ready=False), pod("leaving", deleting=True), pod("evicted")]
    budget = pdb({"minAvailable": 3}, {"disruptedPods": {"evicted": "2026-11-29T19:00:00Z"}})
    got = room(budget, pods)
    assert (got.matched, got.healthy, got.allowed) == (6, 3, 0)
    assert "3 of 6 pod(s) healthy, 3 must stay healthy: 0 more may go out of service" in got.explain()


def test_ready_pods_in_a_hot_upgrade_count_as_out_of_service_until_it_ends() -> None:
    queued = pod("web-0", target=NEW)  # a per-pod annotation the controller has not acted on yet
    taking_over = pod("web-1", target=NEW, record=upgrade_record(phase=Phase.TAKING_OVER))
    # The new Envoy serves, but the old container's reset is still to come (a restart: maybe NotReady).
    resetting = pod("web-2", target=NEW, record=upgrade_record(phase=Phase.RESETTING))
    ended = [
        pod(f"web-{i}", target=NEW, record=upgrade_record(phase=phase))
        for i, phase in ((3, Phase.COMPLETED), (4, Phase.FAILED))
    ]
    got = room(pdb({"maxUnavailable": 3}), [queued, taking_over, resetting, *ended])
    assert (got.healthy, got.upgrading, got.desired, got.allowed) == (2, 3, 2, 0)
    assert "3 Ready pod(s) upgrading count as out of service" in got.explain()
    assert [out_of_service(p) for p in (queued, taking_over, resetting, *ended)] == [True] * 3 + [False] * 2


def test_a_pod_queued_with_its_swap_held_is_out_of_service_for_a_planner_not_for_the_gate() -> None:
    """A release queues with the swap held (not at risk yet): a planner still counts it as queued, or it
    would queue past what the budget allows; the step machine's gate counts it once it leaves Pending."""
    held = pod("web-0", target=NEW, swap_hold=NEW)
    assert out_of_service(held) and not disrupted(held)
    got = room(pdb({"minAvailable": 3}), [held, *web(3)[1:], pod("web-3")])
    assert (got.upgrading, got.allowed) == (1, 0)


def test_pods_of_other_workloads_do_not_count() -> None:
    got = room(pdb({"minAvailable": 2}), [*web(3), pod("db-0", app="db", ready=False)])
    assert (got.matched, got.allowed) == (3, 1)


def test_a_fresh_status_gives_the_scale_and_may_be_tighter() -> None:
    # Scale 5, one replacement not created yet: the status knows 5 pods are expected, the pods say 4.
    fresh = {"observedGeneration": 1, "expectedPods": 5, "disruptionsAllowed": 0}
    got = room(pdb({"maxUnavailable": 1}, fresh), web(4))
    assert (got.desired, got.allowed) == (4, 0)
    # The status allows 1 while the pods alone would allow 2: the tighter bound wins and is named.
    tight = room(pdb({"minAvailable": 2}, {**fresh, "expectedPods": 4, "disruptionsAllowed": 1}), web(4))
    assert tight.allowed == 1 and tight.status_limited
    assert "its status allows 1 disruption(s)" in tight.explain()
    # A status the controller wrote for an older spec is ignored.
    stale = room(pdb({"minAvailable": 2}, {**fresh, "disruptionsAllowed": 0}, generation=2), web(4))
    assert stale.allowed == 2 and not stale.status_limited


def test_no_expected_pods_allows_nothing_and_says_why() -> None:
    """The disruption controller counts no scale for pods without a controller: expectedPods 0."""
    fresh = {"observedGeneration": 1, "expectedPods": 0, "disruptionsAllowed": 0}
    got = room(pdb({"maxUnavailable": 1}, fresh), web(3))
    assert (got.expected, got.allowed) == (0, 0)
    assert "it expects no pods (pods without a controller" in got.explain()
    assert "expects no pods" not in room(pdb({"maxUnavailable": 1}), web(3)).explain()


def test_status_allowance_is_reduced_by_ready_pods_it_still_counts_healthy() -> None:
    fresh = {"observedGeneration": 1, "expectedPods": 4, "disruptionsAllowed": 2}
    pods = [pod("web-0", target=NEW), *web(4)[1:]]
    got = room(pdb({"maxUnavailable": 2}, fresh), pods)
    assert got.allowed == 1
