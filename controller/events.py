"""Kubernetes Events of an upgrade: which one a record owes, its name, and posting it exactly once.

A step that emits an Event also writes it, as owed, into the upgrade record it writes
(`with_owed_event`), so the record is the memory of what is owed. After the write the shell posts it
under a name fixed per attempt and step (`event_name`), so a re-post is 409 AlreadyExists rather than a
second Event, and then marks it posted in the record. Every reconcile first posts whatever the record
still owes: a crash between the write and the post delays the Event, never loses it.
Imports no I/O: `post_owed` reaches the API server only through the `EventSink` it is handed.
"""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from controller.actions import Action, Event, Noop
from controller.errors import KubeError, already_exists
from controller.patches import JSONPatch, record_patch
from controller.record import OwedEvent, UpgradeRecord, record_in
from releaseapi.apitime import format_time

MESSAGE_LIMIT = 1024  # characters of an Event message the API server is sent


def due(record: UpgradeRecord | None) -> OwedEvent | None:
    """The Event `record` owes and that is not known to be posted yet."""
    if record is None or record.event is None or record.event.posted:
        return None
    return record.event


def owing(record: UpgradeRecord, event: Event) -> UpgradeRecord:
    """`record`, owing one more Event (the next in this attempt's sequence)."""
    seq = record.event.seq + 1 if record.event is not None else 1
    owed = OwedEvent(seq=seq, type=event.type, reason=event.reason, message=event.message)
    return replace(record, event=owed)


def posted(record: UpgradeRecord) -> UpgradeRecord:
    """`record` with its owed Event marked as posted."""
    return replace(record, event=replace(record.event, posted=True)) if record.event is not None else record


def posted_patch(record: UpgradeRecord, resource_version: str) -> JSONPatch:
    """The write that marks the owed Event of `record` posted, on the pod as last seen."""
    return record_patch(posted(record), resource_version)


def with_owed_event(action: Action) -> Action:
    """`action` with its Event also owed by the record it writes (the step function's last word)."""
    if isinstance(action, Noop) or action.event is None or action.record is None:
        return action
    return replace(action, record=owing(action.record, action.event))


def event_name(record: UpgradeRecord, *, pod_name: str, pod_uid: str) -> str:
    """The name of the owed Event: the same for every post of it, so a re-post is AlreadyExists.
    The reason is in it too: `seq` restarts if a record was rewritten without it (an older controller)."""
    seq, reason = (record.event.seq, record.event.reason) if record.event is not None else (0, "")
    key = f"{pod_uid}\0{record.to_image}\0{record.attempt}\0{format_time(record.started)}\0{reason}\0{seq}"
    return f"{pod_name[:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def event_manifest(
    involved: Mapping[str, Any],
    *,
    namespace: str,
    type: str,
    reason: str,
    message: str,
    name: str,
    now: datetime,
    component: str,
) -> dict[str, Any]:
    """A core/v1 Event about the object `involved` refers to (apiVersion, kind, name, uid, ...)."""
    stamp = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": dict(involved),
        "type": type,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": component,
    }


WITHDRAWN = "UpgradeWithdrawn"


def withdrawal_manifest(
    pod: Mapping[str, str], *, image: str, message: str, now: datetime, component: str
) -> dict[str, Any]:
    """The Normal `UpgradeWithdrawn` Event on a pod whose held upgrade its release withdrew. `pod`: its
    namespace, name, uid and resourceVersion (the one the withdrawal is pinned to, so the name of a
    second post of the same withdrawal is taken). Not owed by a record: the withdrawal deletes it."""
    key = f"{pod['uid']}\0{image}\0{WITHDRAWN}\0{pod['resourceVersion']}"
    involved = {"apiVersion": "v1", "kind": "Pod", **pod}
    return event_manifest(
        involved,
        namespace=pod["namespace"],
        type="Normal",
        reason=WITHDRAWN,
        message=message,
        name=f"{pod['name'][:200]}.{hashlib.sha256(key.encode()).hexdigest()[:16]}",
        now=now,
        component=component,
    )


def manifest(
    pod: Mapping[str, Any], event: OwedEvent, *, name: str, now: datetime, component: str
) -> dict[str, Any]:
    """The core/v1 Event on `pod` (what `kubectl describe pod` shows), from `component`."""
    meta = pod.get("metadata") or {}
    involved = {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return event_manifest(
        involved,
        namespace=str(meta.get("namespace")),
        type=event.type,
        reason=event.reason,
        message=event.message,
        name=name,
        now=now,
        component=component,
    )


@dataclass(frozen=True)
class Owed:
    """An Event a pod's record owes, and the name it is posted under."""

    record: UpgradeRecord
    event: OwedEvent
    name: str


def owed_by(pod: Mapping[str, Any]) -> Owed | None:
    """What the record of `pod` (raw API JSON) owes; None when nothing is owed or there is no record."""
    meta = pod.get("metadata") or {}
    record = record_in(meta.get("annotations") or {})
    event = due(record)
    if record is None or event is None:
        return None
    name = event_name(record, pod_name=str(meta.get("name")), pod_uid=str(meta.get("uid")))
    return Owed(record=record, event=event, name=name)


class EventSink(Protocol):
    """The two API calls posting needs (controller.kube.Kube is one)."""

    component: str

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> object: ...

    def patch_pod(self, namespace: str, name: str, ops: JSONPatch) -> dict[str, Any]: ...


Outcome = Literal["nothing owed", "posted", "already posted", "failed"]


@dataclass(frozen=True)
class Posting:
    """What `post_owed` did; `pod` is the pod as it now is, `error` why a post failed."""

    pod: dict[str, Any]
    owed: Owed | None = None
    outcome: Outcome = "nothing owed"
    error: KubeError | None = None


def post_owed(sink: EventSink, pod: dict[str, Any], *, now: datetime) -> Posting:
    """Post the Event the pod's record owes, then mark it posted in the record.

    A failed post stays owed for the next reconcile (it must not hold up the upgrade); a failed write
    of the mark raises, like any write, and the caller re-reads: the re-post is then AlreadyExists.
    """
    owed = owed_by(pod)
    if owed is None:
        return Posting(pod)
    meta = pod.get("metadata") or {}
    namespace = str(meta.get("namespace"))
    body = manifest(pod, owed.event, name=owed.name, now=now, component=sink.component)
    outcome: Outcome = "posted"
    try:
        sink.create_event(namespace, body)
    except KubeError as exc:
        if not already_exists(exc):
            return Posting(pod, owed, "failed", exc)
        outcome = "already posted"
    ops = posted_patch(owed.record, str(meta.get("resourceVersion")))
    return Posting(sink.patch_pod(namespace, str(meta.get("name")), ops), owed, outcome)
