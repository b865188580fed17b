"""Following a SidecarRelease from its status: where the rollout stands, when the command is done, and
with which exit code. Pure: the release as read in, a summary and a verdict out; the clock is passed in.

A status speaks for the spec only when its observedGeneration is the release's generation: until the
controller has seen an edit, the status still describes the spec before it (a Complete of the old image
must not end a rollout to the new one). docs/sidecarrelease.md lists the conditions this reads.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from controller.cli.exitcodes import ExitCode
from controller.release import (
    ConditionType,
    InvalidReleaseError,
    ReleaseStatus,
    parse_status,
    parse_strategy,
)
from controller.rollout import held_back

WAITING_FOR_CONTROLLER = "WaitingForController"


class Goal(StrEnum):
    """What a command waits for: the release converged (rollout, resume, rollback), or quiet (pause)."""

    CONVERGED = "converged"
    PAUSED = "paused"


@dataclass(frozen=True)
class Summary:
    """One reading of a release: the counts of its status, if that status is of the current spec."""

    name: str
    image: str  # spec.image
    generation: int
    observed: int | None  # status.observedGeneration; None: no status yet
    fresh: bool  # the status describes this generation
    matched: int
    goal: int  # pods to move: matched less the partition
    updated: int
    upgrading: int
    failed: int
    reason: str  # the Progressing condition's reason (or WaitingForController)
    message: str
    paused_reason: str | None  # PausedBySpec / TooManyFailures when Paused is True
    degraded_reason: str | None
    degraded_message: str
    complete_reason: str | None  # when Complete is True
    complete_message: str
    previous_images: tuple[str, ...]


def _status(raw: Mapping[str, Any]) -> ReleaseStatus | None:
    if raw.get("status") is None:
        return None
    try:
        return parse_status(raw.get("status"))
    except InvalidReleaseError:
        return None


def summarize(raw: Mapping[str, Any]) -> Summary:
    """The release's progress as its status tells it."""
    meta = raw.get("metadata") or {}
    spec = raw.get("spec") or {}
    name, image = str(meta.get("name", "")), str(spec.get("image", ""))
    generation = int(meta.get("generation") or 1)
    read = _status(raw)
    status = read or ReleaseStatus()
    fresh = read is not None and status.observed_generation == generation
    try:
        goal = status.matched - held_back(parse_strategy(spec.get("strategy")), status.matched)
    except InvalidReleaseError:
        goal = status.matched  # the controller says InvalidSpec; the count is not what matters then
    progressing = status.condition(ConditionType.PROGRESSING)
    paused = status.condition(ConditionType.PAUSED)
    degraded = status.condition(ConditionType.DEGRADED)
    complete = status.condition(ConditionType.COMPLETE)
    reason, message = WAITING_FOR_CONTROLLER, "no status yet: is hotupgrade-controller running (--releases)?"
    if fresh and progressing is not None:
        reason, message = progressing.reason, progressing.message
    elif read is not None and not fresh:
        message = (
            f"waiting for the controller to observe generation {generation} "
            f"(status is of generation {status.observed_generation})"
        )
    return Summary(
        name=name,
        image=image,
        generation=generation,
        observed=status.observed_generation if read is not None else None,
        fresh=fresh,
        matched=status.matched,
        goal=goal,
        updated=status.updated,
        upgrading=status.upgrading,
        failed=status.failed,
        reason=reason,
        message=message,
        paused_reason=paused.reason if paused is not None and paused.status else None,
        degraded_reason=degraded.reason if degraded is not None and degraded.status else None,
        degraded_message=degraded.message if degraded is not None else "",
        complete_reason=complete.reason if complete is not None and complete.status else None,
        complete_message=complete.message if complete is not None else "",
        previous_images=status.previous_images,
    )


@dataclass(frozen=True)
class End:
    """The command is done: its exit code and the line that says why."""

    code: ExitCode
    text: str


def _rollback_hint(summary: Summary) -> str:
    if not summary.previous_images:
        return "fix the cause and `hotupgrade retry -n NAMESPACE POD...`"
    return (
        f"roll back with `hotupgrade rollback {summary.name}` (to {summary.previous_images[0]}), "
        "or fix the cause and `hotupgrade retry -n NAMESPACE POD...`"
    )


def verdict(summary: Summary, goal: Goal) -> End | None:
    """Whether the command is done with this reading of the release (None: keep following)."""
    if not summary.fresh:
        return None
    if summary.degraded_reason == "InvalidSpec":
        return End(
            ExitCode.FAILED, f"{summary.name}: the controller cannot act on the spec: {summary.message}"
        )
    if goal is Goal.PAUSED:
        if summary.paused_reason is None:
            return End(ExitCode.FAILED, f"{summary.name}: not paused: spec.strategy.paused is false again")
        if summary.upgrading:
            return None  # upgrades in flight finish; wait for them
        return End(
            ExitCode.OK,
            f"{summary.name}: paused, nothing in flight; {summary.updated} of {summary.goal} pod(s) run "
            f"{summary.image} (`hotupgrade resume {summary.name}` goes on)",
        )
    if summary.complete_reason is not None:
        return End(
            ExitCode.OK, f"{summary.name}: complete ({summary.complete_reason}): {summary.complete_message}"
        )
    if summary.paused_reason == "TooManyFailures" or (
        summary.reason == "UpgradesFailed" and not summary.upgrading
    ):
        return End(
            ExitCode.FAILED,
            f"{summary.name}: degraded ({summary.degraded_reason}): {summary.degraded_message}; "
            + _rollback_hint(summary),
        )
    if summary.paused_reason == "PausedBySpec" and not summary.upgrading:
        return End(
            ExitCode.PAUSED,
            f"{summary.name}: paused (spec.strategy.paused): {summary.updated} of {summary.goal} pod(s) "
            f"run {summary.image}; `hotupgrade resume {summary.name}` goes on",
        )
    return None


def progress_line(summary: Summary) -> str:
    """One line for a log: the counts and the Progressing reason and message."""
    if not summary.fresh:
        return f"{summary.name}: {summary.message}"
    counts = (
        f"{summary.updated}/{summary.goal} pod(s) on {summary.image}, upgrading {summary.upgrading}, "
        f"failed {summary.failed} (matched {summary.matched})"
    )
    return f"{summary.name}: {counts}; {summary.reason}: {summary.message}"


class Watchdog:
    """Stops following after `timeout` seconds in all (0: never), or `progress_deadline` seconds in
    which the status did not change (0: never). Times are the caller's monotonic clock."""

    def __init__(self, *, started: float, timeout: float, progress_deadline: float) -> None:
        self.started = started
        self.timeout = timeout
        self.progress_deadline = progress_deadline
        self.last: tuple[Any, ...] | None = None
        self.changed = started

    def check(self, summary: Summary, now: float) -> str | None:
        """Why to stop following now, or None."""
        seen = (summary.observed, summary.updated, summary.upgrading, summary.failed, summary.reason)
        if seen != self.last:
            self.last, self.changed = seen, now
        if self.timeout and now - self.started >= self.timeout:
            return f"timed out after {self.timeout:.0f}s ({progress_line(summary)})"
        if self.progress_deadline and now - self.changed >= self.progress_deadline:
            return f"no progress for {self.progress_deadline:.0f}s ({progress_line(summary)})"
        return None


def describe_patch(name: str, ops: list[dict[str, Any]]) -> str:
    """`NAME: spec.image=X, spec.strategy.paused=true` for the ops of an edit (its precondition left out)."""
    changes = []
    for op in ops:
        path = op["path"]
        if path == "/metadata/resourceVersion":
            continue
        field = path.lstrip("/").replace("/", ".").replace("~1", "/").replace("~0", "~")
        if op["op"] == "remove":
            changes.append(f"{field} removed")
        elif "value" in op:
            value = op["value"]
            text = "true" if value is True else "false" if value is False else str(value)
            changes.append(f"{field}={text}")
    return f"{name}: " + ", ".join(changes)
