"""The PodDisruptionBudget gate: may this pod's upgrade start now? Pure: budgets and pod facts in, a verdict
(`BudgetView`) out; the arithmetic is controller.disruption's, only the counting rule is chosen here.

The controller asks it for the step that leaves Pending (before any pre-pull or image change), so
per-pod annotations, `hotupgrade rollout` and SidecarReleases all meet it; an upgrade past Pending is
never stopped. There the pods that count as out of service are the unready and those an upgrade has
changed (`disruption.disrupted`): a merely queued upgrade is not, or every queued pod would wait for the
others forever. A planner that only queues (the SidecarRelease reconciler) asks with `out_of_service`,
which counts queued pods too, so it does not queue more than the budgets will let through.
"""

from collections.abc import Iterable, Sequence

from controller.disruption import Budget, Counts, Room, disrupted, room, why_out
from controller.observed import BudgetView
from controller.rollout import PodFacts

ADMITTED = BudgetView(admitted=True)
_NAMES_SHOWN = 3


def admit(
    pod: PodFacts, budgets: Iterable[Budget], pods: Iterable[PodFacts], *, counts: Counts = disrupted
) -> BudgetView:
    """Admitted when every budget selecting `pod` lets one more pod go out of service, `pod` counted as it
    is now and the other `pods` (the namespace's; `pod` among them or not) by `counts`."""
    others = [p for p in pods if p.key != pod.key]
    workload = [*others, pod]
    full: list[str] = []
    for budget in sorted(budgets, key=lambda b: b.name):
        if not budget.selects(pod):
            continue
        left = room(budget, workload, counts=counts)
        if left.allowed <= 0:
            full.append(explain(left, [p for p in others if budget.selects(p)], counts=counts))
    if not full:
        return ADMITTED
    return BudgetView(admitted=False, message="; ".join(full))


def explain(left: Room, others: Sequence[PodFacts], *, counts: Counts) -> str:
    """`PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-0 upgrading)`, plus what
    else bounds it (its status, no expected pods)."""
    budget = left.budget
    out = sorted((p.name, why) for p in others if (why := why_out(budget, p, counts=counts)) is not None)
    total = max(0, left.expected - left.desired)
    text = f"PodDisruptionBudget {budget.name}: {len(out)} of {total} allowed disruption(s) in use"
    if out:
        shown = ", ".join(f"{name} {why}" for name, why in out[:_NAMES_SHOWN])
        more = f" and {len(out) - _NAMES_SHOWN} more" if len(out) > _NAMES_SHOWN else ""
        text += f" ({shown}{more})"
    if left.status_limited:
        text += f"; its status allows {budget.disruptions_allowed} disruption(s)"
    if left.expected <= 0 < left.matched:
        # updatePdbStatus: no expected pods, no disruption. Pods without a controller have no scale.
        text += "; it expects no pods (pods without a controller under maxUnavailable or a percentage)"
    return text
