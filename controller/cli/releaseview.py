"""What `hotupgrade status [NAME...]` prints: a table of SidecarReleases from their status, and for one
release its conditions, rollback images, overlaps and a table of the pods it governs. Pure: documents in,
lines out.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from controller.release import ConditionType, InvalidReleaseError, ReleaseStatus, parse_status
from controller.rollout import PodFacts, ReleasePlan

RELEASE_HEADERS = (
    "NAME",
    "IMAGE",
    "MATCHED",
    "UPDATED",
    "READY",
    "UPGRADING",
    "FAILED",
    "PAUSED",
    "PROGRESS",
)
POD_HEADERS = ("POD", "STATE", "RUNS", "TARGET", "PHASE")


def _status(raw: Mapping[str, Any]) -> ReleaseStatus | None:
    try:
        return parse_status(raw.get("status"))
    except InvalidReleaseError:
        return None


def release_row(raw: Mapping[str, Any]) -> list[str]:
    """One line of the release table; `-` where the controller has written no status yet."""
    name = str((raw.get("metadata") or {}).get("name"))
    image = str((raw.get("spec") or {}).get("image", ""))
    status = _status(raw)
    if status is None or status.condition(ConditionType.PROGRESSING) is None:
        return [name, image, *(["-"] * (len(RELEASE_HEADERS) - 2))]
    paused = status.condition(ConditionType.PAUSED)
    progressing = status.condition(ConditionType.PROGRESSING)
    counts = (status.matched, status.updated, status.ready, status.upgrading, status.failed)
    return [
        name,
        image,
        *(str(c) for c in counts),
        paused.reason if paused is not None and paused.status else "no",
        progressing.reason if progressing is not None else "-",
    ]


def detail_lines(raw: Mapping[str, Any]) -> list[str]:
    """Conditions (with what to do), rollback images and overlaps of one release."""
    status = _status(raw)
    if status is None:
        return ["status: unreadable"]
    generation = (raw.get("metadata") or {}).get("generation")
    lines = [f"observed generation: {status.observed_generation} (spec generation {generation})"]
    for condition in status.conditions:
        state = "True" if condition.status else "False"
        lines.append(f"{condition.type}: {state} {condition.reason}: {condition.message}")
    if status.previous_images:
        lines.append("roll back to (set spec.image): " + ", ".join(status.previous_images))
    for overlap in status.overlaps:
        lines.append(f"{overlap.pods} selected pod(s) follow {overlap.release} (priority {overlap.priority})")
    return lines


def pod_rows(plan: ReleasePlan, pods: Mapping[str, PodFacts]) -> list[list[str]]:
    """The pods a release governs, in the planner's order, with where each stands."""
    rows: list[list[str]] = []
    for key, state in plan.pods.items():
        pod = pods[key]
        runs = pod.status.sidecar_image if pod.status is not None else "-"
        phase = str(pod.record.phase) if pod.record is not None else "-"
        rows.append([key, str(state), runs, pod.target or "-", phase])
    return rows


def release_table(raws: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [release_row(r) for r in sorted(raws, key=lambda r: str((r.get("metadata") or {}).get("name")))]
