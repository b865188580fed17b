"""One reconcile of a SidecarRelease: re-read it, plan (controller.rollout) over the watch caches, set the
target image of each pod the plan starts, write the status, then post Events and update metrics.

The release only sets `hotupgrade.io/target-image` (pinned to the resourceVersion the plan saw); each
pod's upgrade is the per-pod reconciler's, as for a hand-set target. Level-based: everything is derived
from the release, the pods and their upgrade records, so a restarted controller resumes where the
cluster stands. Errors become retries in the one map of controller.errors: a pod that changed since the
cache saw it is re-read into the cache and the whole read-plan-act runs again, and so does a status write
that lost a race (409: the release changed since it was read), and so does a lift (or an unheld retarget)
when the release, read again right before it, is at another generation (a lift lets a pod swap at once:
never toward an image a spec edit since the plan withdrew); Event posts never fail a reconcile.
PodDisruptionBudgets: the planner may pick a pod, the budget gate (controller.budgetgate) defers it while
a budget selecting it has no room, counting queued pods too, and the status says which budget waits.
The per-pod reconciler gates the start itself again, so this only keeps targets from piling up.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from controller import release_events
from controller.disruption import Counts, out_of_service
from controller.errors import ConflictError, KubeError, NotFoundError, already_exists, retry_for
from controller.events import event_manifest
from controller.fleetcache import CachedPod, CachedRelease
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.observed import BudgetView
from controller.patches import JSONPatch, lift_patch, release_withdraw_patch, target_patch
from controller.reconciler import count_retry, in_place_retries
from controller.release_events import ReleaseEvent
from controller.result import DONE, Result, requeue
from controller.rollout import (
    Lift,
    PodFacts,
    ReleasePlan,
    Start,
    Withdrawal,
    invalid_spec_status,
    orphaned,
    plan_fleet,
)
from releaseapi.release import (
    ConditionType,
    InvalidReleaseError,
    Release,
    ReleaseStatus,
    parse_release,
    parse_status,
    selects,
)
from webhook import logs

RESYNC_SECONDS = 60.0  # look again even without a change (a missed watch event costs at most this)
# How often a reconcile also sweeps for held upgrades no release selects (a fleet-wide pass: ~40 ms at
# 10,000 pods, `python -m bench.controller`); a release found deleted or invalid sweeps at once.
ORPHAN_SWEEP_SECONDS = 60.0
_POSTED_LIMIT = 10_000  # names of Events known to be posted (a cache: a re-post is only AlreadyExists)


class Fleet(Protocol):
    """What the reconciler reads and refreshes (controller.fleetcache.FleetCache is one)."""

    def releases(self) -> Mapping[str, CachedRelease]: ...

    def namespaces(self) -> Mapping[str, Mapping[str, str]]: ...

    def pods(self) -> Mapping[str, CachedPod]: ...

    def pod_written(self, raw: dict[str, Any]) -> None: ...

    def pod_gone(self, namespace: str, name: str) -> None: ...


class Budgets(Protocol):
    """The PodDisruptionBudget gate over its caches (controller.budgetcache.BudgetCache is one)."""

    def admit_facts(self, pod: PodFacts, *, counts: Counts) -> BudgetView: ...

    def seen(self, raw_pod: dict[str, Any]) -> None: ...


def held_back(status: ReleaseStatus, deferred: Mapping[str, str], image: str) -> ReleaseStatus:
    """The planned status once the gate deferred some of the planned starts (pod key -> the gate's
    message): they are not upgrading, and Progressing says which budget they wait for."""
    if not deferred:
        return status
    upgrading = max(0, status.upgrading - len(deferred))
    first = sorted(deferred)[0]
    message = f"{len(deferred)} pod(s) held back, {first} waiting for {deferred[first]}"
    if upgrading:
        message = f"{upgrading} pod(s) upgrading to {image}; {message}"
    conditions = tuple(
        replace(c, status=True, reason="WaitingForDisruptionBudget", message=message)
        if c.type is ConditionType.PROGRESSING
        else c
        for c in status.conditions
    )
    return replace(status, upgrading=upgrading, conditions=conditions)


class ReleaseReconciler:
    """Reconciles one release per call; keeps no state between calls but the names of posted Events."""

    def __init__(
        self,
        kube: Kube,
        fleet: Fleet,
        *,
        metrics: ControllerMetrics,
        budgets: Budgets | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`budgets` None: PodDisruptionBudgets are not consulted (`--no-disruption-budgets`)."""
        self.kube = kube
        self.fleet = fleet
        self.metrics = metrics
        self.budgets = budgets
        self.clock = clock
        self._posted: set[str] = set()
        self.orphan_sweep_seconds = ORPHAN_SWEEP_SECONDS
        self._swept: datetime | None = None

    def reconcile(self, name: str) -> Result:
        """Never raises an Exception: every error ends in a requeue-after (controller.errors)."""
        retrying = in_place_retries(before_sleep=lambda state: count_retry(self.metrics, state, release=name))
        try:
            result: Result = retrying(self._once, name)
        except Exception as exc:
            if isinstance(exc, KubeError):
                self.metrics.reconciles.labels(result="error").inc()
                logs.event(
                    "release_reconcile_failed", level=logging.WARNING, release=name, error=str(exc)[:300]
                )
            else:  # a bug: the worker lives on and the release is tried again later
                logs.event("release_reconcile_crashed", release=name, exc_info=True)
            return requeue(retry_for(exc).requeue_after)
        return result

    def _once(self, name: str) -> Result:
        raw = self.kube.get_release(name)
        if raw is None:
            self.metrics.release.forget(name)
            logs.event("release_gone", release=name)
            self._withdraw_orphans(None, gone=name)  # its held pods: nothing else would ever lift them
            return DONE
        now = self.clock()
        try:
            release = parse_release(raw)
        except InvalidReleaseError as exc:
            self._withdraw_orphans(None, gone=name)  # an invalid spec governs no pod
            return self._invalid(raw, str(exc), now=now)
        plan, pods = self.plan(release, now=now)
        self._withdraw(release, plan, pods)
        if self._swept is None or (now - self._swept).total_seconds() >= self.orphan_sweep_seconds:
            self._withdraw_orphans(release)
        self._lift(release, plan, pods)
        deferred = self._start(raw, release, plan, pods, now=now)
        plan = replace(plan, status=held_back(plan.status, deferred, release.spec.image))
        old = release.status
        if self._write_status(raw, old, plan.status):
            for event in release_events.transition_events(old, plan.status):
                self._post(raw, event, now=now)
            seconds = release_events.rollout_seconds(old, plan.status)
            if seconds is not None:
                self.metrics.release.rollout_seconds.labels(release=name).observe(seconds)
        facts = {k: p.facts for k, p in pods.items()}
        for event in release_events.failure_events(release, plan, facts):
            self._post(raw, event, now=now)
        self._count(name, plan)
        return requeue(RESYNC_SECONDS)

    def plan(self, release: Release, *, now: datetime) -> tuple[ReleasePlan, dict[str, CachedPod]]:
        """The plan of `release` (as just read) against the other cached releases, over its pods."""
        others = [
            r.parsed for n, r in self.fleet.releases().items() if n != release.name and r.parsed is not None
        ]
        namespaces = self.fleet.namespaces()
        selected = {
            key: pod
            for key, pod in self.fleet.pods().items()
            if selects(release, pod.facts.labels, namespaces.get(pod.facts.namespace, {}))
        }
        fleet = plan_fleet([release, *others], [p.facts for p in selected.values()], namespaces, now=now)
        return fleet.releases[release.name], selected

    def _start(
        self,
        raw: Mapping[str, Any],
        release: Release,
        plan: ReleasePlan,
        pods: Mapping[str, CachedPod],
        *,
        now: datetime,
    ) -> dict[str, str]:
        """Set each start's target the budget gate admits; a pod changed since the cache saw it ends the
        batch with a conflict (after refreshing it), so that the rerun plans on what the pod now is.
        Returns the deferred starts: pod key -> the gate's message."""
        started: list[Start] = []
        deferred: dict[str, str] = {}
        try:
            for start in plan.starts:
                verdict = self._gate(start, pods[start.key])
                if not verdict.admitted:
                    deferred[start.key] = verdict.message
                    continue
                self._set_target(release, start, pods[start.key])
                started.append(start)
        finally:
            if started:
                batch = replace(plan, starts=tuple(started))
                self.metrics.release.batches.labels(release=release.name).inc()
                self.metrics.release.started.labels(release=release.name).inc(len(started))
                logs.event(
                    "release_batch_started",
                    release=release.name,
                    image=release.spec.image,
                    pods=",".join(s.key for s in started),
                    unavailable=plan.unavailable,
                    max_unavailable=plan.allowed_unavailable,
                )
                event = release_events.batch_event(release, batch, now=now)
                if event is not None:
                    self._post(raw, event, now=now)
        if deferred:
            logs.event(
                "release_starts_held",
                release=release.name,
                pods=",".join(sorted(deferred)),
                reason=deferred[min(deferred)],
            )
        return deferred

    def _gate(self, start: Start, pod: CachedPod) -> BudgetView:
        """The budget gate's verdict on a planned start; a retarget was queued already, so it costs none."""
        if self.budgets is None or start.retarget:
            return BudgetView(admitted=True)
        return self.budgets.admit_facts(pod.facts, counts=out_of_service)

    def _withdraw(self, release: Release, plan: ReleasePlan, pods: Mapping[str, CachedPod]) -> None:
        """Withdraw the upgrades not swapped yet that the plan would not start now (controller.rollout);
        one whose record the step machine still has to drop needs nothing more from here."""
        patches = _withdrawal_patches(plan.withdrawals, pods)
        self._patch_each(
            patches, "release_upgrades_withdrawn", release=release.name, image=release.spec.image
        )

    def orphans(
        self,
        release: Release | None,
        *,
        gone: str | None = None,
        pods: Mapping[str, CachedPod] | None = None,
    ) -> tuple[Withdrawal, ...]:
        """Held upgrades no release selects any more (controller.rollout.orphaned): `release` as just
        read, the others as cached, `gone` (just found deleted or invalid) left out even if still cached;
        `pods`: the cached pods (None: read the cache)."""
        fresh = [release] if release is not None else []
        cached = [
            r.parsed
            for n, r in self.fleet.releases().items()
            if r.parsed is not None and n not in (gone, release.name if release else None)
        ]
        pods = self.fleet.pods() if pods is None else pods
        held = [p.facts for p in pods.values() if p.facts.swap_hold is not None]
        return orphaned([*fresh, *cached], held, self.fleet.namespaces())

    def _withdraw_orphans(self, release: Release | None, *, gone: str | None = None) -> None:
        """Withdraw what `orphans` finds, each patch pinned to the pod as cached."""
        self._swept = self.clock()
        pods = self.fleet.pods()
        patches = _withdrawal_patches(self.orphans(release, gone=gone, pods=pods), pods)
        name = gone if gone is not None else release.name if release is not None else None
        self._patch_each(patches, "release_orphans_withdrawn", release=name)

    def _lift(self, release: Release, plan: ReleasePlan, pods: Mapping[str, CachedPod]) -> None:
        """Lift the swap holds the plan allows within maxUnavailable (those pods swap now)."""
        patches = [(lift, lift_patch(lift.image, pods[lift.key].resource_version)) for lift in plan.lifts]
        self._patch_each(
            patches,
            "release_swaps_allowed",
            confirm=lambda: self._confirm(release),
            release=release.name,
            unavailable=plan.unavailable,
            max_unavailable=plan.allowed_unavailable,
            held=plan.held,
        )

    def _patch_each(
        self,
        patches: Sequence[tuple[Lift | Withdrawal, JSONPatch]],
        event: str,
        *,
        confirm: Callable[[], None] = lambda: None,
        **fields: Any,
    ) -> None:
        """Apply planned patches in order, each after `confirm` (a pod changed since the cache saw it ends
        the reconcile with a conflict, as a start does); one log event names the pods patched."""
        done: list[str] = []
        try:
            for pod, patch in patches:
                confirm()
                self._patch_planned(pod.namespace, pod.name, patch)
                done.append(pod.key)
        finally:
            if done:
                logs.event(event, pods=",".join(done), **fields)

    def _set_target(self, release: Release, start: Start, pod: CachedPod) -> None:
        if not start.hold:
            self._confirm(release)  # unheld, the pod may swap at once: as a lift
        stale = pod.facts.swap_hold is not None  # never left to hold the new target by chance
        patch = target_patch(start.image, pod.resource_version, hold=start.hold, drop_hold=stale)
        written = self._patch_planned(start.namespace, start.name, patch)
        if self.budgets is not None:
            self.budgets.seen(written)  # the next start of this batch counts it as queued

    def _confirm(self, release: Release) -> None:
        """Raise a conflict (the rerun plans on the edit) unless the release, read again now, is still at
        the generation planned on: a lift lets its pod swap at once, and a spec edited since the plan's
        read (a rollback) may have withdrawn it. An edit landing between this read and the patch is the
        one left: that pod finishes its swap, then moves on (docs/sidecarrelease.md, "One reconcile")."""
        current = self.kube.get_release(release.name)
        # A missing generation reads as 1, as parse_release reads it; a deleted release never matches.
        generation = None if current is None else (current.get("metadata") or {}).get("generation", 1)
        if generation != release.generation:
            raise ConflictError(
                409,
                f"release {release.name} changed since it was planned "
                f"(generation {release.generation}, now {generation})",
            )

    def _patch_planned(self, namespace: str, name: str, patch: JSONPatch) -> dict[str, Any]:
        """Apply a patch pinned to the pod as planned; the written pod goes into the cache at once."""
        try:
            written = self.kube.patch_pod(namespace, name, patch)
        except (ConflictError, NotFoundError) as exc:
            fresh = self.kube.get_pod(namespace, name)
            if fresh is None:
                self.fleet.pod_gone(namespace, name)
            else:
                self.fleet.pod_written(fresh)
            raise ConflictError(
                409, f"pod {namespace}/{name} changed since it was planned: {exc.message[:200]}"
            ) from exc
        self.fleet.pod_written(written)
        return written

    def _write_status(self, raw: Mapping[str, Any], old: ReleaseStatus, new: ReleaseStatus) -> bool:
        """PUT the status if it changed, on the release as read (409 if it moved since); True if written."""
        if raw.get("status") is not None and old == new:
            return False
        body = {**raw, "status": new.to_json()}
        name = str(raw["metadata"]["name"])
        self.kube.replace_release_status(name, body)
        conditions: dict[str, Any] = {str(c.type): f"{c.status}/{c.reason}" for c in new.conditions}
        logs.event(
            "release_status",
            release=name,
            generation=new.observed_generation,
            matched=new.matched,
            updated=new.updated,
            upgrading=new.upgrading,
            failed=new.failed,
            **conditions,
        )
        return True

    def _invalid(self, raw: Mapping[str, Any], why: str, *, now: datetime) -> Result:
        """A spec this controller cannot act on: say why in the status, govern no pod."""
        meta = raw.get("metadata") or {}
        try:
            old = parse_status(raw.get("status"))
        except InvalidReleaseError:
            old = ReleaseStatus()
        generation = meta.get("generation")
        new = invalid_spec_status(
            old, generation=generation if isinstance(generation, int) else 0, why=why, now=now
        )
        logs.event("release_invalid", level=logging.WARNING, release=meta.get("name"), error=why)
        if self._write_status(raw, old, new):
            for event in release_events.transition_events(old, new):
                self._post(raw, event, now=now)
        self.metrics.release.forget(str(meta.get("name")))
        return DONE  # nothing to do until the spec is edited (a release watch event)

    def _post(self, raw: Mapping[str, Any], event: ReleaseEvent, *, now: datetime) -> None:
        meta = raw.get("metadata") or {}
        name = release_events.event_name(str(meta.get("name")), str(meta.get("uid")), event)
        if name in self._posted:
            return
        body = event_manifest(
            release_events.involved_object(raw),
            namespace=release_events.EVENT_NAMESPACE,
            type=event.type,
            reason=event.reason,
            message=event.message,
            name=name,
            now=now,
            component=self.kube.component,
        )
        try:
            self.kube.create_event(release_events.EVENT_NAMESPACE, body)
        except KubeError as exc:
            if not already_exists(exc):
                logs.event(
                    "event_failed",
                    level=logging.WARNING,
                    release=meta.get("name"),
                    reason=event.reason,
                    error=str(exc)[:300],
                )
                return  # a failure's is posted again next time; a batch's or a transition's is lost
        if len(self._posted) >= _POSTED_LIMIT:
            self._posted.clear()
        self._posted.add(name)

    def _count(self, name: str, plan: ReleasePlan) -> None:
        status, metrics = plan.status, self.metrics.release
        metrics.matched.labels(release=name).set(status.matched)
        metrics.updated.labels(release=name).set(status.updated)
        metrics.upgrading.labels(release=name).set(status.upgrading)
        metrics.failed.labels(release=name).set(status.failed)


def _withdrawal_patches(
    withdrawals: Sequence[Withdrawal], pods: Mapping[str, CachedPod]
) -> list[tuple[Withdrawal, JSONPatch]]:
    """The release's patches for `withdrawals`, each pinned to its pod as cached; one whose record the
    step machine still has to drop (neither target nor hold to remove) needs none from here."""
    return [
        (w, release_withdraw_patch(w.image, pods[w.key].resource_version, target=w.target, hold=w.hold))
        for w in withdrawals
        if w.target or w.hold
    ]
