"""Rollout planning and per-pod outcomes for the CLI. Pure: pod facts in, plans and verdicts out."""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from controller.cli.podinfo import PodInfo
from controller.record import Phase


class Outcome(StrEnum):
    """Where one pod of a rollout stands, as the summary shows it."""

    NOT_STARTED = "not started"
    WAITING = "waiting"  # annotated, the controller has not picked it up yet
    IN_PROGRESS = "in progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class RolloutPlan:
    batches: tuple[tuple[str, ...], ...]
    skipped: tuple[tuple[str, str], ...]  # (pod, why)

    @property
    def pods(self) -> tuple[str, ...]:
        return tuple(name for batch in self.batches for name in batch)


def skip_reason(pod: PodInfo, image: str) -> str | None:
    """Why a pod takes no part in a rollout to `image`, or None."""
    if not pod.injected:
        return "not injected (no usable hotupgrade.io/status)"
    if pod.in_flight and pod.record is not None and pod.record.to_image != image:
        return f"another upgrade in flight (to {pod.record.to_image})"
    if pod.status is not None and pod.status.sidecar_image == image and not pod.in_flight:
        return "already on the image"
    record = pod.record
    if (
        record is not None
        and record.phase is Phase.FAILED
        and record.to_image == image
        and pod.target == image
    ):
        return "last upgrade to this image failed (run `hotupgrade retry` to try again)"
    return None


def plan_rollout(pods: Iterable[PodInfo], image: str, *, max_unavailable: int) -> RolloutPlan:
    """Batches of at most `max_unavailable` pods, by name; pods already upgrading go first."""
    if max_unavailable < 1:
        raise ValueError("max_unavailable must be at least 1")
    chosen: list[PodInfo] = []
    skipped: list[tuple[str, str]] = []
    for pod in sorted(pods, key=lambda p: p.name):
        why = skip_reason(pod, image)
        if why is None:
            chosen.append(pod)
        else:
            skipped.append((pod.name, why))
    chosen.sort(key=lambda p: (not p.in_flight, p.name))  # resume an interrupted rollout's batch first
    names = [p.name for p in chosen]
    batches = tuple(tuple(names[i : i + max_unavailable]) for i in range(0, len(names), max_unavailable))
    return RolloutPlan(batches=batches, skipped=tuple(skipped))


def outcome(pod: PodInfo | None, image: str, *, annotated: bool) -> Outcome:
    """The pod's state in a rollout to `image`, judged from its upgrade record."""
    if not annotated:
        return Outcome.NOT_STARTED
    if pod is None:
        return Outcome.FAILED  # deleted mid-rollout
    record = pod.record
    if record is None or record.to_image != image:
        if pod.status is not None and pod.status.sidecar_image == image:
            return Outcome.COMPLETED
        return Outcome.WAITING
    if record.phase is Phase.COMPLETED:
        return Outcome.COMPLETED
    if record.phase is Phase.FAILED:
        return Outcome.FAILED
    return Outcome.IN_PROGRESS


def batch_finished(outcomes: Sequence[Outcome]) -> bool:
    return all(o in (Outcome.COMPLETED, Outcome.FAILED) for o in outcomes)


def summary_rows(
    names: Sequence[str], pods: Mapping[str, PodInfo], outcomes: Mapping[str, Outcome]
) -> list[tuple[str, str, str, str]]:
    """Rows POD, RESULT, PHASE, MESSAGE for the final table."""
    rows = []
    for name in names:
        pod = pods.get(name)
        record = pod.record if pod else None
        phase = str(record.phase) if record else "-"
        message = record.message if record else ("pod gone" if pod is None else "-")
        rows.append((name, str(outcomes.get(name, Outcome.NOT_STARTED)), phase, message))
    return rows


def status_row(pod: PodInfo, epoch: int | None) -> tuple[str, ...]:
    """POD, READY, ACTIVE, SLOT, IMAGE, TARGET, EPOCH, PHASE, MESSAGE for `hotupgrade status`."""
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
