"""Rollout planning and per-pod outcomes for the CLI. Pure: pod facts in, plans and verdicts out.

A rollout is level-based, like the SidecarRelease planner whose pod states it reuses (controller.rollout):
each round re-reads the pods and starts what the budgets allow, so pods made unavailable by anything else
(NotReady, a hand-set target, a release) hold it back too. A pod counts as unavailable as the
PodDisruptionBudgets count it (controller.disruption.out_of_service): until its upgrade has ended.
"""

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

from controller import disruption
from controller.cli.podinfo import PodInfo
from controller.disruption import Budget
from controller.observed import same_image
from controller.record import Phase, UpgradeRecord
from controller.rollout import PodFacts, PodState, pod_state


class Outcome(StrEnum):
    """Where one pod of a rollout stands, as the summary shows it."""

    NOT_STARTED = "not started"
    WAITING = "waiting"  # annotated, the controller has not picked it up yet
    IN_PROGRESS = "in progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    GONE = "pod gone"  # deleted mid-rollout (a scale-down, a restart): not a failure of the image


@dataclass(frozen=True)
class RolloutPlan:
    """The pods a rollout will move, in start order, and those it leaves alone with the reason."""

    pods: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (pod, why)


@dataclass(frozen=True)
class Limits:
    """How far a rollout may go: `max_failures` 0 never stops for failures (the old default)."""

    image: str
    max_unavailable: int = 1
    max_failures: int = 1

    def __post_init__(self) -> None:
        if self.max_unavailable < 1:
            raise ValueError("max_unavailable must be at least 1")
        if self.max_failures < 0:
            raise ValueError("max_failures must not be negative")


@dataclass(frozen=True)
class Start:
    """Annotate pod `name` with the target image; `retry` also asks again after a failed attempt."""

    name: str
    retry: bool = False


@dataclass(frozen=True)
class Tick:
    """One round's decision: what to start, what waits and why, whether the rollout stops or is over."""

    starts: tuple[Start, ...]
    waiting: tuple[str, ...]  # why pods that could be started were not, one line per cause
    failed: tuple[str, ...]  # pods this run started whose upgrade failed
    in_flight: tuple[str, ...]  # pods upgrading (after the starts)
    stopped: str | None  # the failure budget is spent: nothing new starts
    finished: bool  # nothing in flight and nothing more will start


def skip_reason(pod: PodFacts, image: str) -> str | None:
    """Why a pod takes no part in a rollout to `image`, or None. A pod whose last upgrade to the
    image failed takes part: re-running the rollout retries it (the image may have been fixed)."""
    if pod.status is None:
        return "not injected (no usable hotupgrade.io/status)"
    if pod.deleting:
        return "terminating"
    state = pod_state(pod, image)
    if state is PodState.FINISHING and pod.record is not None:
        return f"another upgrade in flight (to {pod.record.to_image})"
    if state is PodState.UPDATED:
        return "already on the image"
    return None


def plan_rollout(pods: Iterable[PodFacts], image: str) -> RolloutPlan:
    """The pods to move, upgrades already under way first (an interrupted rollout resumes), then by name."""
    chosen: list[PodFacts] = []
    skipped: list[tuple[str, str]] = []
    for pod in sorted(pods, key=lambda p: p.name):
        why = skip_reason(pod, image)
        if why is None:
            chosen.append(pod)
        else:
            skipped.append((pod.name, why))
    chosen.sort(key=lambda p: (pod_state(p, image) is not PodState.UPGRADING, p.name))
    return RolloutPlan(pods=tuple(p.name for p in chosen), skipped=tuple(skipped))


def decide(
    plan: RolloutPlan,
    selection: Mapping[str, PodFacts],
    budgets: Sequence[Budget],
    namespace_pods: Sequence[PodFacts],
    *,
    limits: Limits,
    started: AbstractSet[str],
) -> Tick:
    """One round of a rollout: start planned pods while the rollout's budget (`max_unavailable` over the
    selection, NotReady pods included) and every PodDisruptionBudget covering the pod allow it, and no
    more once `max_failures` pods this run started have failed. `started`: pods this run annotated."""
    image = limits.image
    live = [p for p in selection.values() if not p.deleting]
    unavailable = sum(1 for p in live if disruption.out_of_service(p))
    room = limits.max_unavailable - unavailable
    rooms = [(budget, disruption.room(budget, namespace_pods)) for budget in budgets]
    used: dict[str, int] = {}
    failed: list[str] = []
    in_flight: list[str] = []
    candidates: list[tuple[PodFacts, PodState]] = []
    waiting: list[str] = []
    not_ready: list[str] = []
    for name in plan.pods:
        pod = selection.get(name)
        if pod is None or pod.deleting or pod.status is None:
            continue
        state = pod_state(pod, image)
        if state is PodState.FAILED and name in started:
            failed.append(name)
        elif state in (PodState.UPGRADING, PodState.FINISHING):
            in_flight.append(name)
        elif name in started:
            continue  # each pod is started once per run: the controller declined it (see its record)
        elif state is PodState.NOT_READY or (state is PodState.FAILED and not pod.ready):
            not_ready.append(name)
        elif state in (PodState.WAITING, PodState.QUEUED_ELSEWHERE, PodState.FAILED):
            candidates.append((pod, state))
    stopped = None
    if limits.max_failures and len(failed) >= limits.max_failures:
        stopped = (
            f"stopped: {len(failed)} upgrade(s) failed ({', '.join(failed)}), --max-failures is "
            f"{limits.max_failures}; fix the image and run the same rollout again to resume"
        )
    starts: list[Start] = []
    blocked = 0
    for pod, state in candidates if stopped is None else []:
        if state is PodState.QUEUED_ELSEWHERE:
            starts.append(Start(pod.name))  # already queued, so already counted: retargeting is free
            continue
        if room <= 0:
            blocked += 1
            continue
        full = [r for b, r in rooms if b.selects(pod) and r.allowed - used.get(b.name, 0) <= 0]
        if full:
            waiting += [r.explain() for r in full if r.explain() not in waiting]
            blocked += 1
            continue
        for budget, _ in rooms:
            if budget.selects(pod):
                used[budget.name] = used.get(budget.name, 0) + 1
        starts.append(Start(pod.name, retry=state is PodState.FAILED))
        room -= 1
    if blocked and room <= 0:
        waiting.insert(
            0,
            f"--max-unavailable {limits.max_unavailable}: {limits.max_unavailable - room} of {len(live)} "
            "selected pod(s) not Ready or upgrading",
        )
    if not_ready:
        waiting.append(f"not Ready, so not upgraded until they are: {', '.join(not_ready)}")
    in_flight += [s.name for s in starts]
    pending = blocked + len(not_ready)
    finished = not in_flight and (stopped is not None or pending == 0)
    return Tick(
        starts=tuple(starts),
        waiting=tuple(waiting) if stopped is None else (),
        failed=tuple(failed),
        in_flight=tuple(in_flight),
        stopped=stopped,
        finished=finished,
    )


def outcome(pod: PodFacts | None, image: str, *, started: bool) -> Outcome:
    """The pod's state in a rollout to `image`; `started`: this run annotated it."""
    if pod is None or pod.deleting:
        return Outcome.GONE
    if pod.status is None:
        return Outcome.SKIPPED
    state = pod_state(pod, image)
    if state is PodState.UPDATED:
        return Outcome.COMPLETED
    if not started:
        return Outcome.IN_PROGRESS if state is PodState.UPGRADING else Outcome.NOT_STARTED
    if state is PodState.FAILED:
        return Outcome.FAILED
    record = pod.record
    if state is PodState.UPGRADING and touched_by(record, image, retry=pod.retry):
        return Outcome.IN_PROGRESS
    return Outcome.WAITING


def touched_by(record: UpgradeRecord | None, image: str, *, retry: str | None) -> bool:
    """The controller has picked up the request: its record is for `image` and this retry token."""
    return (
        record is not None
        and same_image(record.to_image, image)
        and (retry is None or retry == record.retry_token)
    )


def summary_rows(
    names: Sequence[str], pods: Mapping[str, PodFacts], outcomes: Mapping[str, Outcome]
) -> list[tuple[str, str, str, str]]:
    """Rows POD, RESULT, PHASE, MESSAGE for the final table (MESSAGE says why a pod failed)."""
    rows = []
    for name in names:
        pod = pods.get(name)
        record = pod.record if pod else None
        phase = str(record.phase) if record else "-"
        message = record.message if record else ("pod gone" if pod is None else "-")
        rows.append((name, str(outcomes.get(name, Outcome.NOT_STARTED)), phase, message))
    return rows


def status_row(pod: PodInfo, epoch: int | None) -> tuple[str, ...]:
    """POD, READY, ACTIVE, SLOT, IMAGE, TARGET, EPOCH, PHASE, MESSAGE for `hotupgrade status -n NS`."""
    status = pod.status
    record = pod.record
    return (
        pod.name,
        "yes" if pod.ready else "no",
        status.active if status else "-",
        pod.active_slot or "-",
        status.sidecar_image if status else "(not injected)",
        pod.target or "-",
        "-" if epoch is None else str(epoch),
        f"{record.phase} #{record.attempt}" if record else "-",
        record.message if record else "",
    )


STATUS_HEADERS = ("POD", "READY", "ACTIVE", "SLOT", "IMAGE", "TARGET", "EPOCH", "PHASE", "MESSAGE")


class Remedy(StrEnum):
    ABORT = "abort"
    UPGRADE_BACK = "upgrade back"
    NOTHING = "nothing to roll back"


def rollback_remedy(pod: PodInfo) -> tuple[Remedy, str | None]:
    """How `hotupgrade rollback` undoes a pod's last upgrade: abort it, or upgrade back to `from`."""
    record = pod.record
    if record is None or not pod.injected:
        return Remedy.NOTHING, None
    if record.in_flight:
        return Remedy.ABORT, None
    if (
        record.phase is Phase.COMPLETED
        and pod.status is not None
        and pod.status.sidecar_image == record.to_image
    ):
        return Remedy.UPGRADE_BACK, record.from_image
    return Remedy.NOTHING, None
