"""One watch over the pods a SidecarRelease rolls, for the e2e rollout: how many pods are at risk (the
planner's own definition, controller.rollout.at_risk) after every change the API server publishes, each
pod's NotReady windows once it has first been Ready (what its Service sees), every upgrade record it
carried, and whether an upgrade ever began while an earlier one of the same pod was still changing it.

A watch, not a poll: every pod write arrives as an event in resourceVersion order, so no at-risk peak
and no NotReady blip falls between two samples. Pods created during the watch arrive as the API server
admitted them (the webhook's injection included): `PodHistory.first`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from clusterkit import kube, upgrade
from clusterkit.upgrade import PodReady, PodStream
from controller.record import Phase, UpgradeRecord
from controller.release import IntOrPercent, Strategy
from controller.rollout import allowed_unavailable, at_risk, pod_facts

RecordKey = tuple[str, int, str]  # (to image, attempt, started): one upgrade of one pod


def record_key(record: UpgradeRecord) -> RecordKey:
    return (record.to_image, record.attempt, record.started.isoformat())


def began_over(previous: UpgradeRecord | None, new: UpgradeRecord | None) -> bool:
    """True when `new` is another upgrade than `previous` while `previous` had changed the pod (in flight
    past Pending: controller.rollout.touched) and was not finished: two upgrades of one pod at once. Pure."""
    if previous is None or new is None or not previous.in_flight or previous.phase is Phase.PENDING:
        return False
    return record_key(previous) != record_key(new)


def risk(pods: Iterable[kube.Pod], never_ready: set[str]) -> tuple[int, int, int]:
    """(matched, at risk, at risk among pods that have been Ready): the planner's count over the injected
    pods not terminating, and the same without pods still starting (a Deployment's new replica is at
    risk until its first Ready, which no release caused). Pure."""
    matched = total = counted = 0
    for pod in pods:
        facts = pod_facts(pod)
        if facts.status is None or facts.deleting:
            continue
        matched += 1
        if at_risk(facts):
            total += 1
            counted += facts.name not in never_ready
    return matched, total, counted


@dataclass
class NotReadyWindow:
    """One NotReady window of a pod that had been Ready: when (monotonic), in which scenario phase, and
    what the pod's upgrade record and unready containers said as it opened and closed."""

    phase: str
    opened: float
    opened_on: str
    closed: float | None = None
    closed_on: str = ""

    def to_json(self, origin: float, end: float) -> dict[str, Any]:
        until = self.closed if self.closed is not None else end
        return {
            "phase": self.phase,
            "at_s": round(self.opened - origin, 1),
            "s": round(until - self.opened, 2),
            "opened_on": self.opened_on,
            "closed_on": self.closed_on if self.closed is not None else "(still open)",
        }


def pod_situation(pod: kube.Pod) -> str:
    """The pod's upgrade record (phase, reason, target) and its containers that are not ready. Pure."""
    record = upgrade.upgrade_record(pod)
    what = (
        "no upgrade"
        if record is None
        else f"{record.phase} {record.reason or ''} to {record.to_image}: {record.message[:200]}"
    )
    unready = [
        f"{c.get('name')}:{state}:{(c.get('state') or {}).get(state, {}).get('reason', '')}"
        for c in (pod.get("status") or {}).get("containerStatuses") or []
        if not c.get("ready")
        for state in [next(iter(c.get("state") or {}), "?")]
    ]
    return f"{what}; unready {unready}"


@dataclass
class PodHistory:
    """One pod as the watch saw it."""

    first: kube.Pod  # as first seen: for a pod created during the watch, as admitted
    first_at: float  # time.monotonic() when the watch first saw it (for a pod created during it: its ADDED)
    created_during: bool
    last: kube.Pod
    ready: PodReady | None = None  # None until the pod is first seen Ready
    records: dict[RecordKey, Phase] = field(default_factory=dict)  # each upgrade -> its last phase
    targets: list[tuple[float, str | None]] = field(default_factory=list)  # (monotonic, target) changes
    deleted: bool = False
    windows: list[NotReadyWindow] = field(default_factory=list)  # after its first Ready, in order
    transitions: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), "Phase -> image")

    def upgrades(self, phase: Phase) -> int:
        return sum(1 for p in self.records.values() if p is phase)

    def target_since(self, image: str) -> float | None:
        """When the pod's target annotation last became `image` (None: never)."""
        times = [at for at, target in self.targets if target == image]
        return times[-1] if times else None


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    phase: str
    matched: int
    at_risk: int
    at_risk_counted: int
    allowed: int


@dataclass(kw_only=True)
class ReleaseWatch(PodStream):
    """The pods the selector matches, as e2e.upgrade.PodStream streams them, against `max_unavailable`
    (a count). `phase` labels the samples (the test sets it as the scenario moves on)."""

    max_unavailable: int
    phase: str = "start"
    pods: dict[str, PodHistory] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    overlapping: list[str] = field(default_factory=list)  # "pod: previous record -> new record"

    def listed(self, pods: list[kube.Pod], now: float) -> None:
        for pod in pods:
            self._seen(pod, now, created_during=False)
        self._sample(now)

    def changed(self, kind: str, pod: kube.Pod, now: float) -> None:
        if kind == "DELETED":
            history = self.pods.get(pod["metadata"]["name"])
            if history is not None:
                history.deleted = True
                if history.ready is not None:
                    history.ready.seen(False, now)
        else:
            self._seen(pod, now, created_during=kind == "ADDED")
        self._sample(now)

    def _seen(self, pod: kube.Pod, now: float, *, created_during: bool) -> None:
        name = pod["metadata"]["name"]
        history = self.pods.get(name)
        if history is None:
            history = self.pods[name] = PodHistory(
                first=pod, first_at=now, created_during=created_during, last=pod
            )
            previous = None
            old_target: str | None = None
        else:
            previous = upgrade.upgrade_record(history.last)
            old_target = pod_facts(history.last).target
        record = upgrade.upgrade_record(pod)
        if began_over(previous, record):
            self.overlapping.append(f"{name}: {previous} -> {record}")
        if record is not None:
            key = record_key(record)
            if history.records.get(key) is not record.phase:  # wall time: the load's TcpClose.at is
                history.transitions.append((time.time(), f"{record.phase} -> {record.to_image}"))
            history.records[key] = record.phase
        target = pod_facts(pod).target
        if target != old_target or not history.targets:
            history.targets.append((now, target))
        ready = kube.condition(pod, "Ready")
        if history.ready is None:
            if ready:
                history.ready = PodReady(True, now)
        else:
            if history.ready.ready and not ready:
                history.windows.append(NotReadyWindow(self.phase, now, pod_situation(pod)))
            elif ready and not history.ready.ready and history.windows:
                history.windows[-1].closed, history.windows[-1].closed_on = now, pod_situation(pod)
            history.ready.seen(ready, now)
        history.last = pod

    def _sample(self, now: float) -> None:
        live = [h.last for h in self.pods.values() if not h.deleted]
        never_ready = {name for name, h in self.pods.items() if h.ready is None}
        matched, total, counted = risk(live, never_ready)
        strategy = Strategy(max_unavailable=IntOrPercent(self.max_unavailable))
        self.samples.append(
            Sample(now, self.phase, matched, total, counted, allowed_unavailable(strategy, matched))
        )

    # --- reading (under the lock: the watch thread may still write while the test reads) -----------

    def snapshot(self) -> dict[str, kube.Pod]:
        """The live pods as last seen."""
        with self._lock:
            return {name: h.last for name, h in self.pods.items() if not h.deleted}

    def history(self, name: str) -> PodHistory:
        with self._lock:
            return self.pods[name]

    def not_ready_s(self) -> dict[str, float]:
        """NotReady seconds per pod after its first Ready; a window still open counts up to the end."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        with self._lock:
            return {n: round(h.ready.closed(end), 2) if h.ready else 0.0 for n, h in self.pods.items()}

    def not_ready_windows(self, origin: float) -> dict[str, list[dict[str, Any]]]:
        """Per pod, its NotReady windows in seconds from `origin` (a time.monotonic()); none: left out."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        with self._lock:
            return {
                n: [w.to_json(origin, end) for w in h.windows]
                for n, h in sorted(self.pods.items())
                if h.windows
            }

    def over_budget(self) -> list[Sample]:
        """Samples with more pods at risk (among pods that had been Ready) than maxUnavailable allows."""
        with self._lock:
            return [s for s in self.samples if s.at_risk_counted > s.allowed]

    def risk_report(self) -> dict[str, Any]:
        """Per phase: max at risk (all, and among pods that had been Ready), allowed, and seconds spent
        at each count of pods at risk (among pods that had been Ready)."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        with self._lock:
            samples = list(self.samples)
        out: dict[str, Any] = {}
        for index, sample in enumerate(samples):
            until = samples[index + 1].at if index + 1 < len(samples) else end
            phase = out.setdefault(
                sample.phase,
                {"max_at_risk": 0, "max_at_risk_ready_before": 0, "allowed": 0, "seconds_at": Counter()},
            )
            phase["max_at_risk"] = max(phase["max_at_risk"], sample.at_risk)
            phase["max_at_risk_ready_before"] = max(phase["max_at_risk_ready_before"], sample.at_risk_counted)
            phase["allowed"] = max(phase["allowed"], sample.allowed)
            phase["seconds_at"][sample.at_risk_counted] += until - sample.at
        for phase in out.values():
            phase["seconds_at"] = {k: round(v, 1) for k, v in sorted(phase["seconds_at"].items())}
        return out
