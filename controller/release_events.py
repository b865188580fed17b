"""What a SidecarRelease's reconcile tells the world besides its status: Events (one per batch of starts,
one per failed pod, one per condition transition) and how long a finished rollout took. Pure.

Each Event's name is fixed per occurrence (as controller.events names a pod's), so posting it again after
a crash or a retry is AlreadyExists, not a second Event. Events of a cluster-scoped object live in the
`default` namespace, as client-go's recorder puts them (`kubectl describe sr NAME` finds them there).
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from controller.rollout import PodFacts, PodState, ReleasePlan, Start
from releaseapi.apitime import format_time
from releaseapi.release import API_VERSION, KIND, ConditionType, Release, ReleaseStatus

EVENT_NAMESPACE = "default"
NORMAL, WARNING = "Normal", "Warning"
_NAMES_SHOWN = 10


@dataclass(frozen=True)
class ReleaseEvent:
    """One Event on a release; `identity` says which occurrence it is (hashed into its name)."""

    type: str
    reason: str
    message: str
    identity: str


def involved_object(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The involvedObject of an Event on the release document `raw`."""
    meta = raw.get("metadata") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def event_name(release: str, uid: str, event: ReleaseEvent) -> str:
    """`<release>.<hash>`: the same for every post of one occurrence, different for the next."""
    digest = hashlib.sha256(f"{uid}\0{event.reason}\0{event.identity}".encode()).hexdigest()[:16]
    return f"{release[:200]}.{digest}"


def _names(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - _NAMES_SHOWN} more" if len(keys) > _NAMES_SHOWN else ""
    return ", ".join(keys[:_NAMES_SHOWN]) + more


def batch_event(release: Release, plan: ReleasePlan, *, now: datetime) -> ReleaseEvent | None:
    """The Event for the starts of one reconcile (a batch), or None without starts."""
    starts: Sequence[Start] = plan.starts
    if not starts:
        return None
    keys = sorted(s.key for s in starts)
    retargeted = sum(1 for s in starts if s.retarget)
    how = f" ({retargeted} retargeted from another image)" if retargeted else ""
    message = (
        f"started {len(starts)} upgrade(s) to {release.spec.image}{how}: {_names(keys)}; "
        f"{plan.unavailable} unavailable before, maxUnavailable {plan.allowed_unavailable}"
    )
    identity = f"batch\0{release.spec.image}\0{format_time(now)}\0{','.join(keys)}"
    return ReleaseEvent(NORMAL, "BatchStarted", message, identity)


def failure_events(release: Release, plan: ReleasePlan, pods: Mapping[str, PodFacts]) -> list[ReleaseEvent]:
    """One Warning per governed pod whose upgrade to the release's image failed (per attempt)."""
    out: list[ReleaseEvent] = []
    for key, state in sorted(plan.pods.items()):
        record = pods[key].record if key in pods else None
        if state is not PodState.FAILED or record is None:
            continue
        why = f"{record.reason}: {record.message}" if record.reason else record.message
        message = f"pod {key} failed to upgrade to {release.spec.image}: {why}"
        identity = f"failed\0{key}\0{record.to_image}\0{record.attempt}\0{format_time(record.started)}"
        out.append(ReleaseEvent(WARNING, "PodUpgradeFailed", message, identity))
    return out


def transition_events(old: ReleaseStatus, new: ReleaseStatus) -> list[ReleaseEvent]:
    """Events for conditions that turned: paused (or its reason changed), resumed, complete, invalid."""
    out: list[ReleaseEvent] = []

    def turned(kind: ConditionType) -> tuple[bool, bool]:
        before, after = old.condition(kind), new.condition(kind)
        if after is None:
            return False, False
        was = before is not None and before.status
        on = after.status and (not was or (before is not None and before.reason != after.reason))
        return on, was and not after.status

    def event(kind: ConditionType, type_: str, reason: str) -> ReleaseEvent:
        condition = new.condition(kind)
        assert condition is not None
        identity = f"{kind}\0{condition.reason}\0{format_time(condition.since)}\0{new.observed_generation}"
        return ReleaseEvent(type_, reason, f"{condition.reason}: {condition.message}", identity)

    paused_on, paused_off = turned(ConditionType.PAUSED)
    paused = new.condition(ConditionType.PAUSED)
    if paused_on and paused is not None:
        warning = paused.reason != "PausedBySpec"
        out.append(event(ConditionType.PAUSED, WARNING if warning else NORMAL, "RolloutPaused"))
    if paused_off:
        out.append(event(ConditionType.PAUSED, NORMAL, "RolloutResumed"))
    if turned(ConditionType.COMPLETE)[0]:
        out.append(event(ConditionType.COMPLETE, NORMAL, "RolloutComplete"))
    degraded = new.condition(ConditionType.DEGRADED)
    if turned(ConditionType.DEGRADED)[0] and degraded is not None and degraded.reason == "InvalidSpec":
        out.append(event(ConditionType.DEGRADED, WARNING, "InvalidSpec"))
    return out


def rollout_seconds(old: ReleaseStatus, new: ReleaseStatus) -> float | None:
    """How long the rollout that just completed took: from Complete turning False to it turning True."""
    before, after = old.condition(ConditionType.COMPLETE), new.condition(ConditionType.COMPLETE)
    if before is None or after is None or before.status or not after.status:
        return None
    return max(0.0, (after.since - before.since).total_seconds())
