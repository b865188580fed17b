"""PodDisruptionBudgets as a hot upgrade reads them: how many more pods a budget lets go out of service
now. Pure: the PDB document and the planner's pod facts in, a count and its explanation out.

A PDB only guards evictions; the API server does not consult it when a pod's sidecar image changes. So
the CLI's rollout, the SidecarRelease reconciler and the controller's gate (controller.budgetgate) honour
it themselves, as Kruise's PodUnavailableBudget does for in-place updates. The arithmetic is the
disruption controller's (Kubernetes v1.34.4, pkg/controller/disruption/disruption.go:
getExpectedPodCount, countHealthyPods, updatePdbStatus), with one change: a pod with a hot upgrade is
not healthy, although still Ready. Planners that only queue count a queued upgrade too
(`out_of_service`); the gate, which decides when a queued upgrade starts, counts it from then
(`disrupted`). So upgrades started by a rollout, by hand (the per-pod annotation) or by a SidecarRelease
all use the same budget, and so do pods that are simply not Ready.
"""

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.rollout import PodFacts, at_risk, heading_to, touched
from releaseapi.release import IntOrPercent
from releaseapi.selector import InvalidSelectorError, LabelSelector, parse_selector

_PERCENT = re.compile(r"^(0|[1-9][0-9]*)%$")


def out_of_service(pod: PodFacts) -> bool:
    """Not Ready, or a hot upgrade queued or in flight until its record is Completed or Failed.

    Stricter than the SidecarRelease planner's at_risk, which lets a pod go once its new Envoy serves:
    the reset of the old container at the end of an upgrade restarts a container, which can make the pod
    NotReady again, and a budget must hold through that too (docs/rollout.md).
    """
    # Queued counts even with its swap held by a release (not at risk yet): the planner asks before it
    # queues, and the step machine's own gate (`disrupted`) decides later when the upgrade may go on.
    queued = heading_to(pod) is not None
    return at_risk(pod) or queued or (pod.record is not None and pod.record.in_flight)


def disrupted(pod: PodFacts) -> bool:
    """Not Ready, or an upgrade that has changed the pod (past Pending) still in flight.

    What the controller's own gate counts (controller.budgetgate): a queued upgrade is not a disruption
    yet, since the gate is what decides when it becomes one; counting it would hold every queued pod
    back behind the others forever.
    """
    return not pod.ready or touched(pod)


Counts = Callable[[PodFacts], bool]  # which Ready pods a hot upgrade has taken out of service


class InvalidBudgetError(ValueError):
    """The document is not a policy/v1 PodDisruptionBudget this code understands; names the field."""


@dataclass(frozen=True)
class Budget:
    """One PodDisruptionBudget: spec, and the status its controller last wrote (valid when fresh)."""

    namespace: str
    name: str
    selector: LabelSelector | None  # None: a null selector, which selects no pod (policy/v1)
    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None
    generation: int = 1
    observed_generation: int = 0
    expected_pods: int = 0
    disruptions_allowed: int = 0
    disrupted_pods: frozenset[str] = frozenset()  # evicted, not yet seen deleted: out of service

    @property
    def status_fresh(self) -> bool:
        """The status describes this spec (the API's own rule: observedGeneration == generation)."""
        return self.observed_generation >= 1 and self.observed_generation == self.generation

    def selects(self, pod: PodFacts) -> bool:
        return (
            pod.namespace == self.namespace
            and self.selector is not None
            and self.selector.matches(pod.labels)
        )

    def describe(self) -> str:
        """`minAvailable 2`, `maxUnavailable 25%`, or `no minAvailable/maxUnavailable`."""
        if self.max_unavailable is not None:
            return f"maxUnavailable {self.max_unavailable.to_json()}"
        if self.min_available is not None:
            return f"minAvailable {self.min_available.to_json()}"
        return "no minAvailable/maxUnavailable"


def _int_or_percent(value: Any, where: str) -> IntOrPercent | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return IntOrPercent(value)
    if isinstance(value, str) and _PERCENT.match(value):
        return IntOrPercent(int(value[:-1]), percent=True)
    raise InvalidBudgetError(f"{where}: must be a non-negative integer or a percentage, got {value!r}")


def _count(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidBudgetError(f"{where}: must be an integer, got {value!r}")


def parse_budget(doc: Mapping[str, Any]) -> Budget:
    """A Budget from a raw policy/v1 PodDisruptionBudget. Raises InvalidBudgetError."""
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    status = doc.get("status") or {}
    raw_selector = spec.get("selector")
    try:
        selector = None if raw_selector is None else parse_selector(raw_selector, "spec.selector")
    except InvalidSelectorError as exc:
        raise InvalidBudgetError(str(exc)) from exc
    disrupted = status.get("disruptedPods") or {}
    if not isinstance(disrupted, dict):
        raise InvalidBudgetError("status.disruptedPods: must map pod names to times")
    return Budget(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        selector=selector,
        min_available=_int_or_percent(spec.get("minAvailable"), "spec.minAvailable"),
        max_unavailable=_int_or_percent(spec.get("maxUnavailable"), "spec.maxUnavailable"),
        generation=_count(meta.get("generation"), "metadata.generation") or 1,
        observed_generation=_count(status.get("observedGeneration"), "status.observedGeneration"),
        expected_pods=_count(status.get("expectedPods"), "status.expectedPods"),
        disruptions_allowed=_count(status.get("disruptionsAllowed"), "status.disruptionsAllowed"),
        disrupted_pods=frozenset(str(name) for name in disrupted),
    )


@dataclass(frozen=True)
class Room:
    """What a budget allows now; `allowed` more pods may go out of service (never negative)."""

    budget: Budget
    matched: int  # pods the selector matches (terminating ones included, as the disruption controller)
    healthy: int  # Ready, not terminating, not evicted, no hot upgrade queued or in flight
    desired: int  # pods that must stay healthy
    expected: int  # the denominator: status.expectedPods when fresh, else the pods matched
    upgrading: int  # matched pods still Ready but with a hot upgrade queued or in flight
    allowed: int
    status_limited: bool = False  # the fresh status's disruptionsAllowed was the tighter bound

    def explain(self) -> str:
        """One line naming the budget and its counts, for a rollout that waits for it."""
        b = self.budget
        text = (
            f"PodDisruptionBudget {b.name} ({b.describe()}): {self.healthy} of {self.matched} pod(s) "
            f"healthy, {self.desired} must stay healthy"
        )
        if self.upgrading:
            text += f", {self.upgrading} Ready pod(s) upgrading count as out of service"
        if self.status_limited:
            text += f"; its status allows {b.disruptions_allowed} disruption(s)"
        if self.expected <= 0 < self.matched:
            # updatePdbStatus: no expected pods, no disruption. Pods without a controller have no scale.
            text += "; it expects no pods (pods without a controller under maxUnavailable or a percentage)"
        return f"{text}: {self.allowed} more may go out of service"


def desired_healthy(budget: Budget, *, expected: int) -> int:
    """getExpectedPodCount: an integer minAvailable is a count; percentages and maxUnavailable scale
    `expected` rounding up (intstr.GetScaledValueFromIntOrPercent(..., true)); neither field: 0."""
    if budget.max_unavailable is not None:
        return max(0, expected - budget.max_unavailable.scaled(expected, round_up=True))
    if budget.min_available is not None:
        if not budget.min_available.percent:
            return budget.min_available.value
        return budget.min_available.scaled(expected, round_up=True)
    return 0


def room(budget: Budget, pods: Iterable[PodFacts], *, counts: Counts = out_of_service) -> Room:
    """How many more of the budget's pods may go out of service, counting upgrades in flight.

    `counts` says which pods are out of service besides the unready: `out_of_service` (also a queued
    upgrade) for planners that only queue (the CLI, SidecarReleases), `disrupted` for the controller's gate.

    The denominator of percentages and maxUnavailable is the workloads' scale, which only the
    disruption controller knows (status.expectedPods): taken from a fresh status, else the pods matched
    (an integer minAvailable needs no denominator).
    A fresh status's disruptionsAllowed, less the Ready pods it still counts healthy but which are
    upgrading, also bounds the result: the tighter of the two wins.
    """
    matched = [p for p in pods if budget.selects(p)]
    live = [p for p in matched if not p.deleting and p.name not in budget.disrupted_pods]
    healthy = sum(1 for p in live if p.ready and not counts(p))
    upgrading = sum(1 for p in live if p.ready and counts(p))
    # Terminating pods stay in the denominator: their replacements are part of the workload's scale.
    expected = budget.expected_pods if budget.status_fresh else len(matched)
    desired = desired_healthy(budget, expected=expected)
    allowed = max(0, healthy - desired) if expected > 0 else 0
    status_limited = False
    if budget.status_fresh:
        from_status = max(0, budget.disruptions_allowed - upgrading)
        if from_status < allowed:
            allowed, status_limited = from_status, True
    return Room(
        budget=budget,
        matched=len(matched),
        healthy=healthy,
        desired=desired,
        expected=expected,
        upgrading=upgrading,
        allowed=allowed,
        status_limited=status_limited,
    )


def why_out(budget: Budget, pod: PodFacts, *, counts: Counts = out_of_service) -> str | None:
    """Why a pod the budget selects is not healthy by `room`'s rule (`not Ready`, `upgrading`, ...)."""
    if pod.deleting:
        return "terminating"
    if pod.name in budget.disrupted_pods:
        return "evicted"
    if not pod.ready:
        return "not Ready"
    if counts(pod):
        return "upgrading" if touched(pod) else "upgrade queued"
    return None
