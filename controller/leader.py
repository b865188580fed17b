"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it.

Expiry is judged by how long *this* replica has seen the lease unchanged (not by the timestamps in it),
so clock skew between replicas does not matter. The decision is pure; `LeaderElector` does the I/O.
Losing the lease is fatal: the caller exits the process (a half-stopped controller could act twice).
A stopping leader releases the lease only after its workers have stopped, and waits for them no longer
than its last renewal lets it act (`shutdown_budget`); a worker still busy then keeps the lease held
until it expires, so no follower acts beside it.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from controller.errors import ConflictError, KubeError
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from webhook import logs


@dataclass(frozen=True)
class LeaseView:
    holder: str | None
    duration_seconds: int
    renew_time: str | None
    acquire_time: str | None
    transitions: int
    resource_version: str


class LeaseDecision(StrEnum):
    CREATE = "create"
    RENEW = "renew"
    ACQUIRE = "acquire"
    WAIT = "wait"


def lease_view(raw: Mapping[str, Any]) -> LeaseView:
    spec = raw.get("spec") or {}
    return LeaseView(
        holder=spec.get("holderIdentity") or None,
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        renew_time=spec.get("renewTime"),
        acquire_time=spec.get("acquireTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((raw.get("metadata") or {}).get("resourceVersion", "")),
    )


def decide_lease(lease: LeaseView | None, *, identity: str, unchanged_for: float) -> LeaseDecision:
    """Create a missing lease, renew our own, take over a released or expired one, else wait."""
    if lease is None:
        return LeaseDecision.CREATE
    if lease.holder == identity:
        return LeaseDecision.RENEW
    if lease.holder is None or unchanged_for >= lease.duration_seconds:
        return LeaseDecision.ACQUIRE
    return LeaseDecision.WAIT


def shutdown_budget(
    *, lease_duration: float, renew_deadline: float, retry_period: float, since_renew: float
) -> float:
    """Seconds (0 or more) a stopping leader may still wait for its workers, `since_renew` seconds after
    its last successful renewal, before it must assume a follower may act."""
    # A leader acts only within `renew_deadline` of its last renewal (as `_lost` judges it, and as
    # client-go does): the rest of `lease_duration` is the followers' margin for clock rates and for the
    # time between their poll and ours. `lease_duration - retry_period` keeps a margin even when
    # renew_deadline is set at or past the duration, since a follower takes an expired lease at once.
    acting = min(renew_deadline, lease_duration - retry_period)
    return max(0.0, acting - since_renew)


def micro_time(now: datetime) -> str:
    """Kubernetes MicroTime."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    *,
    name: str,
    namespace: str,
    identity: str,
    duration_seconds: int,
    now: datetime,
    previous: LeaseView | None,
    decision: LeaseDecision,
) -> dict[str, Any]:
    """The Lease to write for `decision`; carries the previous resourceVersion (409 if it moved)."""
    renewing = decision is LeaseDecision.RENEW and previous is not None
    transitions = (previous.transitions if previous else 0) + (1 if decision is LeaseDecision.ACQUIRE else 0)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous.resource_version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": (previous.acquire_time if renewing and previous else None) or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        },
    }


class LeaderElector:
    """Acquire, hold and release one Lease for `identity`."""

    def __init__(
        self,
        kube: Kube,
        *,
        name: str,
        namespace: str,
        identity: str,
        metrics: ControllerMetrics,
        lease_duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.metrics = metrics
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.monotonic = monotonic
        self.clock = clock
        self._seen: tuple[str | None, str | None, str] | None = None
        self._seen_at = 0.0
        self._last_renew = 0.0

    def try_acquire_or_renew(self) -> bool:
        """One round; True when we hold the lease afterwards."""
        raw = self.kube.get_lease(self.namespace, self.name)
        lease = lease_view(raw) if raw is not None else None
        now_mono = self.monotonic()
        if lease is not None:
            fingerprint = (lease.holder, lease.renew_time, lease.resource_version)
            if fingerprint != self._seen:
                self._seen, self._seen_at = fingerprint, now_mono
        decision = decide_lease(lease, identity=self.identity, unchanged_for=now_mono - self._seen_at)
        if decision is LeaseDecision.WAIT:
            return False
        body = lease_body(
            name=self.name,
            namespace=self.namespace,
            identity=self.identity,
            duration_seconds=self.lease_duration,
            now=self.clock(),
            previous=lease,
            decision=decision,
        )
        try:
            if decision is LeaseDecision.CREATE:
                self.kube.create_lease(self.namespace, body)
            else:
                self.kube.replace_lease(self.namespace, self.name, body)
        except ConflictError:
            return False  # someone else wrote it first; look again next round
        if decision is not LeaseDecision.RENEW:
            logs.event("lease_acquired", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        self._last_renew = now_mono
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we lead (True) or `stop` is set (False)."""
        logs.event("lease_waiting", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self.metrics.leader.set(1)
                    return True
            except KubeError as exc:
                logs.event("lease_error", level=logging.WARNING, error=str(exc)[:200])
            stop.wait(self.retry_period)
        return False

    def hold(self, stop: threading.Event) -> bool:
        """Renew until `stop` (True) or until renewing failed for `renew_deadline` (False: lease lost)."""
        while not stop.wait(self.retry_period):
            try:
                held = self.try_acquire_or_renew()
            except KubeError as exc:
                logs.event("lease_error", level=logging.WARNING, error=str(exc)[:200])
                held = False
            if not held and self._lost():
                self.metrics.leader.set(0)
                logs.event("lease_lost", level=logging.ERROR, lease=f"{self.namespace}/{self.name}")
                return False
        return True

    def _lost(self) -> bool:
        """Lost when someone else holds it, or our last successful renew is older than the deadline."""
        holder = self._seen[0] if self._seen else None
        if holder is not None and holder != self.identity:
            return True
        return self.monotonic() - self._last_renew > self.renew_deadline

    def shutdown_budget(self) -> float:
        """Seconds from now this leader may still act on its last renewal (`shutdown_budget`)."""
        return shutdown_budget(
            lease_duration=self.lease_duration,
            renew_deadline=self.renew_deadline,
            retry_period=self.retry_period,
            since_renew=self.monotonic() - self._last_renew,
        )

    def release(self) -> None:
        """Give the lease up at shutdown so the next replica need not wait for it to expire; only once
        nothing of this replica acts any more (the caller's workers have stopped)."""
        try:
            raw = self.kube.get_lease(self.namespace, self.name)
            if raw is None or lease_view(raw).holder != self.identity:
                return
            body = dict(raw)
            body["spec"] = {**(raw.get("spec") or {}), "holderIdentity": None, "leaseDurationSeconds": 1}
            self.kube.replace_lease(self.namespace, self.name, body)
            self.metrics.leader.set(0)
            logs.event("lease_released", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        except KubeError as exc:
            logs.event("lease_release_failed", level=logging.WARNING, error=str(exc)[:200])
