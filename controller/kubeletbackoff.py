"""The kubelet's crash-loop back-off as it applies to the pair's image swaps: a model the step function
asks before each image change, and its memory, the `hotupgrade.io/kubelet-backoff` annotation. Pure.

The kubelet (verified in Kubernetes v1.34.4) backs off *starting* a container, not only crashing ones:
- `GetBackoffKey` (pkg/kubelet/kuberuntime/helpers.go) keys the back-off by pod name, namespace, uid,
  container name, `container.Image` and resources: one key per slot and image.
- `doBackOff` (kuberuntime_manager.go) runs before every start of a container whose name has an exited
  instance. It takes the newest exited one, in the snapshot taken before this sync killed anything (an
  image change kills and starts in one `SyncPod`), so the instance before the running one: the pod
  status's `lastState.terminated.finishedAt` (F). It backs off while `IsInBackOffSince(key, F)`, else
  calls `Next(key, F)` and starts. A container with no exited instance is started with neither.
- client-go util/flowcontrol/backoff.go: `Next` sets the initial back-off when the key has no entry or it
  expired, else doubles it up to the max, and stamps `lastUpdate` (L) now; `IsInBackOffSince` is
  `now - F < backoff` unless the entry is missing or expired.
- pkg/kubelet/kubelet.go: initial 10 s, max 300 s (`MaxContainerBackOff`); the alpha gates
  ReduceDefaultCrashLoopBackOffDecay (1 s / 60 s) and KubeletCrashLoopBackOffMax (a max of at most
  300 s) only lower them, so 10 s / 300 s bound every 1.34 kubelet. Its `HasExpiredFunc` expires an
  entry when `F - L > 600 s`, and `HandlePodCleanups` (kubelet_pods.go, every 2 s) drops entries
  with `now - L > 600 s`.

So a slot that starts an image it already started (after an earlier swap back) less than the back-off
after its last exit waits in CrashLoopBackOff, NotReady, and the controller used to take that for a
failed target. `hold` says how long to wait before the image change instead; `after_start` records the
kubelet's `Next` that the change causes. Where the model cannot know, it errs long: timestamps carry
`SLACK` against the kubelet's reaction, housekeeping and clock skew, waits `MARGIN` against the
second-truncated `finishedAt`; restarts nobody planned (crashes, a recreated sandbox) count as the
kubelet's own `Next`s on the slot's image, made now; a restarted kubelet forgets its back-offs, which
only shortens them. No I/O, no clock.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from controller.keys import ANNOTATION_KUBELET_BACKOFF
from controller.observed import ContainerView
from controller.restarts import planned_in
from releaseapi.apitime import format_time, parse_time

INITIAL_SECONDS = 10.0  # initialCrashLoopBackOff
MAX_SECONDS = 300.0  # MaxContainerBackOff
EXPIRY_SECONDS = 600.0  # the kubelet's HasExpiredFunc and its GC of back-off entries
SLACK_SECONDS = 60.0  # our start time vs the kubelet's lastUpdate: its reaction, housekeeping, clock skew
MARGIN_SECONDS = 2.0  # finishedAt is truncated to the second, plus 1 s of clock skew
MAX_ENTRIES = 32  # bounds the annotation; only back-to-back swaps across many images come near it


@dataclass(frozen=True)
class Entry:
    """The kubelet's back-off entry for one container and image, as far as the controller can tell."""

    container: str
    image: str
    backoff: float  # seconds
    since: datetime  # when the kubelet last called `Next` for it (at the latest)


@dataclass(frozen=True)
class Memory:
    """What the annotation keeps: live entries, and the unplanned restarts already counted per container."""

    entries: tuple[Entry, ...] = ()
    crashes: Mapping[str, int] = field(default_factory=dict)

    def entry(self, container: str, image: str) -> Entry | None:
        return next((e for e in self.entries if (e.container, e.image) == (container, image)), None)

    def render(self) -> str:
        entries = [
            {
                "container": e.container,
                "image": e.image,
                "backoff": round(e.backoff),
                "since": format_time(e.since),
            }
            for e in self.entries
        ]
        return json.dumps(
            {"starts": entries, "crashes": dict(self.crashes)}, sort_keys=True, separators=(",", ":")
        )


@dataclass(frozen=True)
class Slot:
    """One container of the pair right before the controller changes its image (from the pod)."""

    container: str
    image: str  # its spec image now, the one the change replaces
    restarts: int  # status restartCount
    planned: int  # restarts the controller caused (hotupgrade.io/planned-restarts)
    last_exit: datetime | None  # finishedAt of its newest exited instance; None: it has none
    started_at: datetime | None  # startedAt of its running instance


@dataclass(frozen=True)
class Hold:
    """The kubelet would back off starting `image` in `container` for `seconds` more, until `until`."""

    container: str
    image: str
    seconds: float
    until: datetime
    backoff: float  # the entry's back-off, seconds
    started: datetime  # when `image` last started in `container` (the entry's `since`)
    last_exit: datetime  # the container's last exit, from which the kubelet counts


def memory_in(annotations: Mapping[str, str]) -> Memory:
    """The memory in a pod's annotations (empty when absent or malformed: it is rewritten)."""
    raw = annotations.get(ANNOTATION_KUBELET_BACKOFF)
    if raw is None:
        return Memory()
    try:
        data: Any = json.loads(raw)
        entries = tuple(
            Entry(str(e["container"]), str(e["image"]), float(e["backoff"]), parse_time(str(e["since"])))
            for e in data.get("starts", [])
        )
        crashes = {str(k): int(v) for k, v in dict(data.get("crashes", {})).items()}
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return Memory()
    return Memory(entries=entries, crashes=crashes)


def slot_of(container: ContainerView, annotations: Mapping[str, str]) -> Slot:
    """`container` as the model needs it; its newest exited instance is itself while it is terminated."""
    last_exit = container.finished_at if container.terminated_reason is not None else None
    return Slot(
        container=container.name,
        image=container.image,
        restarts=container.restart_count,
        planned=planned_in(annotations).get(container.name, 0),
        last_exit=last_exit or container.last_finished_at,
        started_at=container.started_at,
    )


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def _gone(entry: Entry, now: datetime) -> bool:
    """The kubelet has certainly dropped the entry (GC of `now - lastUpdate > 600 s`)."""
    return _seconds(now, entry.since) > EXPIRY_SECONDS + SLACK_SECONDS


def _expired(entry: Entry, last_exit: datetime) -> bool:
    """The kubelet certainly treats the entry as expired for an exit at `last_exit` (`F - L > 600 s`)."""
    return _seconds(last_exit, entry.since) > EXPIRY_SECONDS + SLACK_SECONDS


def hold(memory: Memory, slot: Slot, image: str, now: datetime) -> Hold | None:
    """How long the kubelet would hold a start of `image` in `slot` made now (`IsInBackOffSince`), or
    None when it would start it at once."""
    entry = memory.entry(slot.container, image)
    if entry is None or slot.last_exit is None or _gone(entry, now) or _expired(entry, slot.last_exit):
        return None
    until = slot.last_exit + timedelta(seconds=entry.backoff + MARGIN_SECONDS)
    seconds = _seconds(until, now)
    if seconds <= 0:
        return None
    return Hold(
        container=slot.container,
        image=image,
        seconds=seconds,
        until=until,
        backoff=entry.backoff,
        started=entry.since,
        last_exit=slot.last_exit,
    )


def _next(memory: Memory, container: str, image: str, *, now: datetime, last_exit: datetime | None) -> Memory:
    """The kubelet's `Next(key, F)` at `now`: initial when new or certainly expired, else doubled."""
    entry = memory.entry(container, image)
    fresh = entry is None or _gone(entry, now) or (last_exit is not None and _expired(entry, last_exit))
    backoff = INITIAL_SECONDS if fresh or entry is None else min(entry.backoff * 2, MAX_SECONDS)
    others = tuple(e for e in memory.entries if (e.container, e.image) != (container, image))
    return replace(memory, entries=(*others, Entry(container, image, backoff, now)))


def after_start(memory: Memory, slot: Slot, image: str, now: datetime) -> Memory:
    """The memory once the controller sets `slot` to `image` at `now`: unplanned restarts counted on the
    slot's current image, its entry's time moved to the running instance's start, the `Next` this start
    causes (when the slot has an exited instance), and entries the kubelet has dropped pruned."""
    unplanned = max(0, slot.restarts - slot.planned)
    for _ in range(unplanned - memory.crashes.get(slot.container, 0)):
        memory = _next(memory, slot.container, slot.image, now=now, last_exit=None)
    memory = replace(memory, crashes={**memory.crashes, slot.container: unplanned})
    current = memory.entry(slot.container, slot.image)
    if current is not None and slot.started_at is not None and slot.started_at > current.since:
        others = tuple(e for e in memory.entries if e is not current)
        memory = replace(memory, entries=(*others, replace(current, since=slot.started_at)))
    if slot.last_exit is not None or slot.restarts > 0:
        memory = _next(memory, slot.container, image, now=now, last_exit=slot.last_exit)
    live = sorted((e for e in memory.entries if not _gone(e, now)), key=lambda e: e.since)
    return replace(memory, entries=tuple(live[-MAX_ENTRIES:]))
