"""The `hotupgrade.io/upgrade` annotation: the controller's only memory of an upgrade.

Everything needed to resume after a restart is in here (containers, slots, container ids seen before
each image change, the Event the last step still owes: see controller.events), so the reconciler keeps
no state of its own. Pure: parsing and rendering only.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from controller.keys import ANNOTATION_UPGRADE
from controller.observed import Seen
from releaseapi.apitime import format_time, parse_time

RECORD_VERSION = 1


class Phase(StrEnum):
    """Where an upgrade stands; the last two are terminal."""

    PENDING = "Pending"  # checks not yet passed (pod not Ready, old agent not serving, ...)
    PRE_PULLING = "PrePulling"  # a short-lived pod pulls the target image on the node
    TAKING_OVER = "TakingOver"  # standby runs the target image; waiting for its agent to serve
    DRAINING = "Draining"  # new Envoy serves; waiting for the old one to exit
    RESETTING = "Resetting"  # old container set to the empty image; waiting for it to run
    ROLLING_BACK = "RollingBack"  # standby set back to the empty image; old Envoy keeps serving
    COMPLETED = "Completed"
    FAILED = "Failed"


IN_FLIGHT = frozenset(
    {Phase.PENDING, Phase.PRE_PULLING, Phase.TAKING_OVER, Phase.DRAINING, Phase.RESETTING, Phase.ROLLING_BACK}
)
# How the message of an upgrade held before its swap by a release (hotupgrade.io/swap-hold) begins: the
# step machine writes it, the release planner lifts such pods first (they pre-pulled).
SWAP_WAIT = "waiting for its release to allow the swap"


class Reason(StrEnum):
    """Why an upgrade failed; stable strings for Events, metrics and the record."""

    NOT_ALLOWED = "NotAllowed"
    INVALID_STATUS = "InvalidStatus"
    STANDBY_NOT_EMPTY = "StandbyNotEmpty"
    CHECKS_TIMEOUT = "ChecksTimeout"
    PRE_PULL_FAILED = "PrePullFailed"
    PRE_PULL_TIMEOUT = "PrePullTimeout"
    STANDBY_CHANGED = "StandbyChanged"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_FAILED = "ContainerFailed"
    AGENT_FAILED = "AgentFailed"
    TAKE_OVER_TIMEOUT = "TakeOverTimeout"
    TAKE_OVER_STUCK = "TakeOverStuck"
    DRAIN_TIMEOUT = "DrainTimeout"
    RESET_TIMEOUT = "ResetTimeout"
    ABORTED = "Aborted"
    INVALID_TARGET = "InvalidTarget"  # not an image reference, or the empty image
    ALREADY_RUNNING = "AlreadyRunning"  # the target is the image the active slot runs (re-pushed tag?)
    KUBELET_UNSUPPORTED = "KubeletUnsupported"  # nativeSidecar mode on a kubelet older than 1.32
    KUBELET_IGNORED_IMAGE_CHANGE = "KubeletIgnoredImageChange"  # the container was never restarted
    KUBELET_BACK_OFF = "KubeletBackOff"  # the kubelet's crash-loop back-off would outlast the step timeout
    NO_ENVOY_AFTER_ROLLBACK = "NoEnvoyAfterRollBack"  # a rollback left no Envoy serving: repairing forward


class OwedEventJSON(TypedDict):
    seq: int
    type: str
    reason: str
    message: str
    posted: bool


class UpgradeRecordJSON(TypedDict):
    version: int
    phase: str
    to: str
    attempt: int
    started: str
    phaseSince: str
    message: str
    oldContainer: str
    newContainer: str
    oldSlot: str
    newSlot: str
    emptyImage: str
    takenOver: bool
    finished: NotRequired[str]
    reason: NotRequired[str]
    standbyIDBefore: NotRequired[str]
    standbyRestartsBefore: NotRequired[int]
    standbyImageIDBefore: NotRequired[str]
    oldContainerID: NotRequired[str]
    oldRestartsBefore: NotRequired[int]
    oldImageIDBefore: NotRequired[str]
    rollbackFromID: NotRequired[str]
    rollbackFromRestarts: NotRequired[int]
    rollbackFromImageID: NotRequired[str]
    retryToken: NotRequired[str]
    abortToken: NotRequired[str]
    prePullPod: NotRequired[str]
    event: NotRequired[OwedEventJSON]


class InvalidRecordError(ValueError):
    """The annotation is present but is not a record this version understands."""


@dataclass(frozen=True)
class OwedEvent:
    """The Event written with the record, posted after it: a crash in between leaves `posted` false."""

    seq: int  # 1, 2, ... along this upgrade; with attempt and reason it fixes the Event's name
    type: str
    reason: str
    message: str
    posted: bool = False

    def to_json(self) -> OwedEventJSON:
        return OwedEventJSON(
            seq=self.seq, type=self.type, reason=self.reason, message=self.message, posted=self.posted
        )


@dataclass(frozen=True)
class UpgradeRecord:
    """One upgrade of one pod: `from_image` -> `to_image`, moving `old_container` -> `new_container`."""

    phase: Phase
    from_image: str
    to_image: str
    attempt: int
    started: datetime
    phase_since: datetime
    message: str
    old_container: str
    new_container: str
    old_slot: str
    new_slot: str
    empty_image: str
    taken_over: bool = False
    finished: datetime | None = None
    reason: Reason | None = None
    standby_id_before: str | None = None  # standby containerID before its image was set to the target
    standby_restarts_before: int | None = None
    standby_image_id_before: str | None = None
    old_container_id: str | None = None  # old containerID before its image was reset to empty
    old_restarts_before: int | None = None
    old_image_id_before: str | None = None
    rollback_from_id: str | None = None  # standby containerID when the rollback started
    rollback_from_restarts: int | None = None
    rollback_from_image_id: str | None = None
    retry_token: str | None = None  # value of hotupgrade.io/retry this attempt consumed
    abort_token: str | None = None  # value of hotupgrade.io/abort already handled
    pre_pull_pod: str | None = None
    event: OwedEvent | None = None  # None: nothing owed (also every record written before this field)

    @property
    def in_flight(self) -> bool:
        return self.phase in IN_FLIGHT

    @property
    def standby_seen(self) -> Seen:
        """The standby container before its image was set to the target."""
        return Seen(self.standby_id_before, self.standby_restarts_before, self.standby_image_id_before)

    @property
    def old_seen(self) -> Seen:
        """The old container before its image was reset to the empty image."""
        return Seen(self.old_container_id, self.old_restarts_before, self.old_image_id_before)

    @property
    def rollback_seen(self) -> Seen:
        """The standby container when the rollback set it back to the empty image."""
        return Seen(self.rollback_from_id, self.rollback_from_restarts, self.rollback_from_image_id)

    def moved(self, phase: Phase, *, now: datetime, message: str, **changes: Any) -> "UpgradeRecord":
        """This record in a new phase since `now`; terminal phases also get `finished`."""
        finished = now if phase in (Phase.COMPLETED, Phase.FAILED) else self.finished
        return replace(self, phase=phase, phase_since=now, message=message, finished=finished, **changes)

    def to_json(self) -> UpgradeRecordJSON:
        out = UpgradeRecordJSON(
            version=RECORD_VERSION,
            phase=str(self.phase),
            to=self.to_image,
            attempt=self.attempt,
            started=format_time(self.started),
            phaseSince=format_time(self.phase_since),
            message=self.message,
            oldContainer=self.old_container,
            newContainer=self.new_container,
            oldSlot=self.old_slot,
            newSlot=self.new_slot,
            emptyImage=self.empty_image,
            takenOver=self.taken_over,
        )
        data: dict[str, Any] = dict(out)
        data["from"] = self.from_image  # `from` is a keyword, so it is not a TypedDict field
        optional: dict[str, Any] = {
            "finished": format_time(self.finished) if self.finished else None,
            "reason": str(self.reason) if self.reason else None,
            "standbyIDBefore": self.standby_id_before,
            "standbyRestartsBefore": self.standby_restarts_before,
            "standbyImageIDBefore": self.standby_image_id_before,
            "oldContainerID": self.old_container_id,
            "oldRestartsBefore": self.old_restarts_before,
            "oldImageIDBefore": self.old_image_id_before,
            "rollbackFromID": self.rollback_from_id,
            "rollbackFromRestarts": self.rollback_from_restarts,
            "rollbackFromImageID": self.rollback_from_image_id,
            "retryToken": self.retry_token,
            "abortToken": self.abort_token,
            "prePullPod": self.pre_pull_pod,
            "event": self.event.to_json() if self.event is not None else None,
        }
        data.update({k: v for k, v in optional.items() if v is not None})
        return data  # type: ignore[return-value]

    def render(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))


def _parse_event(value: Any) -> OwedEvent | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRecordError("field 'event' must be an object")
    seq, posted = value.get("seq"), value.get("posted")
    if not isinstance(seq, int) or seq < 1 or not isinstance(posted, bool):
        raise InvalidRecordError("field 'event' needs a positive integer 'seq' and a boolean 'posted'")
    kind, reason, message = value.get("type"), value.get("reason"), value.get("message")
    if not (isinstance(kind, str) and isinstance(reason, str) and isinstance(message, str)):
        raise InvalidRecordError("field 'event' needs string 'type', 'reason' and 'message'")
    return OwedEvent(seq=seq, type=kind, reason=reason, message=message, posted=posted)


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRecordError(f"field {key!r} must be a string")
    return value


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecordError(f"field {key!r} must be an integer")
    return value


def parse_record(raw: str) -> UpgradeRecord:
    """Parse the annotation value; raise InvalidRecordError with the reason when it is malformed."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # a deeply nested value is any user's to write
        raise InvalidRecordError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRecordError("not a JSON object")
    if data.get("version") != RECORD_VERSION:
        raise InvalidRecordError(f"unsupported version {data.get('version')!r}")
    required: tuple[str, ...] = ("phase", "from", "to", "started", "phaseSince", "oldContainer")
    required += ("newContainer", "oldSlot", "newSlot", "emptyImage")
    for key in required:
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidRecordError(f"field {key!r} must be a non-empty string")
    if not isinstance(data.get("attempt"), int) or data["attempt"] < 1:
        raise InvalidRecordError("field 'attempt' must be a positive integer")
    try:
        phase = Phase(data["phase"])
        reason_raw = _opt_str(data, "reason")
        reason = Reason(reason_raw) if reason_raw else None
        started = parse_time(data["started"])
        phase_since = parse_time(data["phaseSince"])
        finished_raw = _opt_str(data, "finished")
        finished = parse_time(finished_raw) if finished_raw else None
    except ValueError as exc:
        raise InvalidRecordError(str(exc)) from exc
    return UpgradeRecord(
        phase=phase,
        from_image=data["from"],
        to_image=data["to"],
        attempt=data["attempt"],
        started=started,
        phase_since=phase_since,
        message=str(data.get("message", "")),
        old_container=data["oldContainer"],
        new_container=data["newContainer"],
        old_slot=data["oldSlot"],
        new_slot=data["newSlot"],
        empty_image=data["emptyImage"],
        taken_over=bool(data.get("takenOver", False)),
        finished=finished,
        reason=reason,
        standby_id_before=_opt_str(data, "standbyIDBefore"),
        standby_restarts_before=_opt_int(data, "standbyRestartsBefore"),
        standby_image_id_before=_opt_str(data, "standbyImageIDBefore"),
        old_container_id=_opt_str(data, "oldContainerID"),
        old_restarts_before=_opt_int(data, "oldRestartsBefore"),
        old_image_id_before=_opt_str(data, "oldImageIDBefore"),
        rollback_from_id=_opt_str(data, "rollbackFromID"),
        rollback_from_restarts=_opt_int(data, "rollbackFromRestarts"),
        rollback_from_image_id=_opt_str(data, "rollbackFromImageID"),
        retry_token=_opt_str(data, "retryToken"),
        abort_token=_opt_str(data, "abortToken"),
        pre_pull_pod=_opt_str(data, "prePullPod"),
        event=_parse_event(data.get("event")),
    )


def record_in(annotations: Mapping[str, str]) -> UpgradeRecord | None:
    """The upgrade record in a pod's annotations, or None (absent or corrupted)."""
    raw = annotations.get(ANNOTATION_UPGRADE)
    if raw is None:
        return None
    try:
        return parse_record(raw)
    except InvalidRecordError:
        return None
