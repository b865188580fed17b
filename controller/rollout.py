"""The fleet planner for SidecarReleases: which release governs each pod, which pods start next, and the
status each release should show. Pure: releases, pod facts and namespace labels in; a plan out.

The per-pod upgrade stays the step machine's (controller.steps); a release only sets a pod's
`hotupgrade.io/target-image`. So the planner never runs two upgrades of one pod: a pod whose upgrade has
touched it (past Pending) finishes, whatever the release now says, and only then moves on. Budget
(issue 14, "rollout speed"): a pod counts against maxUnavailable while it is not Ready, or from its swap
(the standby's image change) until its new Envoy serves (the take-over); draining and resetting overlap the
next batch, since the pod then serves on the new Envoy. A release starts a pod with its swap held
(`hotupgrade.io/swap-hold`): the pod checks and pre-pulls, then waits; the planner lifts the hold within
maxUnavailable. Held pods are bounded apart: at most maxUnavailable of a release's pods are held at once,
so the next batch pre-pulls while the current one swaps. A held pod is lifted only toward an upgrade the
plan would start now; otherwise (the spec moved to another image, the release stopped on failures of its
image, the partition grew) it is withdrawn: nothing was swapped, so nothing is undone and nothing fails.
Arithmetic and its upstream sources: docs/sidecarrelease.md.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.cli.podinfo import pod_info
from controller.keys import ANNOTATION_RETRY, ANNOTATION_SWAP_HOLD
from controller.observed import same_image
from controller.record import SWAP_WAIT, Phase, UpgradeRecord
from releaseapi.release import (
    PREVIOUS_IMAGES_LIMIT,
    Condition,
    ConditionType,
    Overlap,
    Release,
    ReleaseStatus,
    Strategy,
    owning_release,
    precedence,
    selects,
)
from webhook.injection_status import InjectionStatus

__all__ = [  # the selection rule moved to releaseapi.release; kept importable from here
    "FleetPlan",
    "Lift",
    "PodFacts",
    "PodState",
    "ReleasePlan",
    "Start",
    "Withdrawal",
    "after_withdrawal",
    "allowed_unavailable",
    "at_risk",
    "at_swap",
    "heading_to",
    "held",
    "held_back",
    "invalid_spec_status",
    "owning_release",
    "plan_fleet",
    "plan_release",
    "pod_facts",
    "pod_state",
    "precedence",
    "previous_images",
    "selects",
    "stopped_on_failures",
    "touched",
    "withdrawn",
]

# Phases in which the new Envoy already serves: the pod is at risk again only if it is not Ready.
_SERVING_NEW = frozenset({Phase.DRAINING, Phase.RESETTING})
# Phases before the swap, where a hold keeps an upgrade (the step machine changes no container there).
_BEFORE_SWAP = frozenset({Phase.PENDING, Phase.PRE_PULLING})
_NAMES_SHOWN = 5


@dataclass(frozen=True)
class PodFacts:
    """What the planner reads of one pod (a projection of the raw pod, as controller.cli.podinfo)."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ready: bool
    status: InjectionStatus | None  # None: not injected (or unreadable): no release can upgrade it
    record: UpgradeRecord | None = None
    target: str | None = None
    retry: str | None = None
    deleting: bool = False
    swap_hold: str | None = None  # the image whose swap a release holds back (hotupgrade.io/swap-hold)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def pod_facts(pod: Mapping[str, Any]) -> PodFacts:
    """The planner's view of a raw pod document (the CLI's PodInfo plus labels, retry and deletion)."""
    info = pod_info(pod)
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return PodFacts(
        namespace=info.namespace,
        name=info.name,
        labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        ready=info.ready,
        status=info.status,
        record=info.record,
        target=info.target,
        retry=annotations.get(ANNOTATION_RETRY),
        deleting=bool(meta.get("deletionTimestamp")),
        swap_hold=annotations.get(ANNOTATION_SWAP_HOLD) or None,
    )


class PodState(StrEnum):
    """Where one governed pod stands with respect to its release's image."""

    UPDATED = "Updated"  # runs the image, nothing in flight
    UPGRADING = "Upgrading"  # queued or in flight toward the image
    FINISHING = "Finishing"  # an upgrade to another image touched the pod: it finishes first
    QUEUED_ELSEWHERE = "QueuedElsewhere"  # targets another image, nothing touched yet: retargeted
    FAILED = "Failed"  # the last upgrade to the image failed; not retried (`hotupgrade retry` does)
    WAITING = "Waiting"  # another image, Ready, nothing in flight: may start
    NOT_READY = "NotReady"  # another image, not Ready: a hot upgrade needs a serving pod, so it waits


@dataclass(frozen=True)
class _PodImage:
    namespace: str
    name: str
    image: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Lift(_PodImage):
    """Remove pod namespace/name's swap hold (still `image`): its upgrade may swap now, at risk from then."""


@dataclass(frozen=True)
class Withdrawal(_PodImage):
    """Withdraw pod namespace/name's upgrade to `image`, not swapped yet: remove its target (`target`: it
    still names `image`) and its hold (`hold`: no upgrade record is left for the step machine to drop;
    else the hold stays, and the step machine, seeing it without the target, drops both: controller.steps).
    Never a Failed record: it would count against the release."""

    target: bool = True
    hold: bool = True


@dataclass(frozen=True)
class Start(_PodImage):
    """Set `hotupgrade.io/target-image` of pod namespace/name to `image` (the step machine takes over)."""

    retarget: bool = False  # replaces a target the controller has not acted on yet
    hold: bool = True  # with its swap held (hotupgrade.io/swap-hold); a retarget (queued unheld) stays so


@dataclass(frozen=True)
class ReleasePlan:
    release: str
    pods: Mapping[str, PodState]  # governed pods by namespace/name
    starts: tuple[Start, ...]  # each sets the target with its swap held
    status: ReleaseStatus
    allowed_unavailable: int
    unavailable: int  # governed pods not Ready or at risk, before the lifts
    lifts: tuple[Lift, ...] = ()
    held: int = 0  # governed pods held before their swap, before the lifts and starts
    withdrawals: tuple[Withdrawal, ...] = ()


@dataclass(frozen=True)
class FleetPlan:
    releases: Mapping[str, ReleasePlan]
    owners: Mapping[str, str]  # pod namespace/name -> the release that governs it


# --- selection ---------------------------------------------------------------------------------------


# selects, precedence and owning_release live in releaseapi.release (the webhook follows the same rule);
# importable from here too.


# --- strategy arithmetic -----------------------------------------------------------------------------


def allowed_unavailable(strategy: Strategy, matched: int) -> int:
    """maxUnavailable for `matched` pods: percentages round down, at least 1 with pods, as StatefulSet
    (getStatefulSetMaxUnavailable) and a Deployment without surge (ResolveFenceposts) resolve it; Kruise's
    SidecarSet and DaemonSet round up, one pod more at risk (docs/sidecarrelease.md)."""
    scaled = strategy.max_unavailable.scaled(matched, round_up=False)
    return max(1, scaled) if matched > 0 else 0


def held_back(strategy: Strategy, matched: int) -> int:
    """Pods the partition keeps on the previous image: Kruise's CalculatePartitionReplicas (percentages
    round up; below 100% at least one pod moves when there are two or more; never more than matched)."""
    partition = strategy.partition
    count = partition.scaled(matched, round_up=True)
    if partition.percent and partition.value < 100 and matched > 1 and count == matched:
        count = matched - 1
    return max(0, min(count, matched))


# --- one pod -----------------------------------------------------------------------------------------


def touched(pod: PodFacts) -> bool:
    """An upgrade has changed the pod (past Pending): it runs to its end whatever the target says."""
    record = pod.record
    return record is not None and record.in_flight and record.phase is not Phase.PENDING


def heading_to(pod: PodFacts) -> str | None:
    """The image an upgrade of this pod is queued or underway to, as the step machine will act on it."""
    record = pod.record
    if touched(pod):
        assert record is not None
        return record.to_image
    if pod.target is None:
        return None  # steps aborts a Pending upgrade whose target was removed
    retried = record is not None and pod.retry is not None and pod.retry != record.retry_token
    if record is not None and record.to_image == pod.target and not record.in_flight and not retried:
        return None  # Completed or Failed for this target: steps does nothing more
    return pod.target


def held(pod: PodFacts) -> bool:
    """Queued, checking or pre-pulling toward the image whose swap a release holds: the step machine changes
    no container until the hold is lifted (controller.steps), so the pod is not at risk yet."""
    heading = heading_to(pod)
    if pod.swap_hold is None or heading is None or heading != pod.swap_hold:
        return False
    record = pod.record
    return not touched(pod) or (record is not None and record.phase in _BEFORE_SWAP)


def at_risk(pod: PodFacts) -> bool:
    """Counts against maxUnavailable: not Ready, or from its swap (or, unheld, from being queued: nothing
    stops it swapping) until its new Envoy serves."""
    if not pod.ready:
        return True
    if heading_to(pod) is None or held(pod):
        return False
    record = pod.record
    return not (touched(pod) and record is not None and record.phase in _SERVING_NEW)


def at_swap(pod: PodFacts) -> bool:
    """Held, Ready, checked and pre-pulled: the step machine waits only for the hold to swap (it says so in
    the record's message, controller.steps). Only such pods are lifted, so the window opens at the swap."""
    record = pod.record
    return held(pod) and pod.ready and record is not None and record.message.startswith(SWAP_WAIT)


def pod_state(pod: PodFacts, image: str) -> PodState:
    """Where `pod` (injected) stands toward `image`."""
    assert pod.status is not None
    heading = heading_to(pod)
    if heading is not None:
        if same_image(heading, image):
            return PodState.UPGRADING
        return PodState.FINISHING if touched(pod) else PodState.QUEUED_ELSEWHERE
    record = pod.record
    if record is not None and record.phase is Phase.FAILED and same_image(record.to_image, image):
        return PodState.FAILED
    if same_image(pod.status.sidecar_image, image):
        return PodState.UPDATED
    return PodState.WAITING if pod.ready else PodState.NOT_READY


def stopped_on_failures(strategy: Strategy, failed: int) -> bool:
    """The release has stopped on failures of its image: maxFailures reached, or paused with any failure.
    Then no held pod swaps toward that image (only upgrades already past their swap finish)."""
    return failed >= strategy.max_failures or (strategy.paused and failed > 0)


def withdrawn(held_pods: Sequence[PodFacts], *, image: str, stopped: bool, room: int) -> list[PodFacts]:
    """Which held pods (name order) a release withdraws, since its plan would not start them now: those
    heading to another image (the spec was edited, e.g. rolled back onto the image they run), all when it
    `stopped` on failures of `image`, those past the `room` its partition leaves, and those withdrawn
    already (the target gone, the step machine yet to drop the record: never lifted meanwhile)."""
    out: list[PodFacts] = []
    kept = 0
    for pod in held_pods:
        heading = heading_to(pod)
        gone = heading is None or pod.target != heading
        if gone or not same_image(heading or "", image) or stopped or kept >= room:
            out.append(pod)
        else:
            kept += 1
    return out


def orphaned(
    releases: Sequence[Release], pods: Iterable[PodFacts], namespaces: Mapping[str, Mapping[str, str]]
) -> tuple[Withdrawal, ...]:
    """Held upgrades no valid release selects any more (deleted, its selectors edited, the pod or its
    namespace relabelled): withdrawn as a release withdraws one, since nothing was swapped; in pod order.
    `releases`: every release with a valid spec (an invalid one governs no pod)."""
    out: list[Withdrawal] = []
    for pod in pods:
        if pod.swap_hold is None or pod.status is None or pod.deleting or not held(pod):
            continue  # the cheap test first: on a fleet at rest no pod is held
        if not any(selects(r, pod.labels, namespaces.get(pod.namespace, {})) for r in releases):
            out.append(_withdrawal(pod))
    return tuple(sorted(out, key=lambda w: (w.namespace, w.name)))


def after_withdrawal(pod: PodFacts, image: str) -> PodState:
    """Where a withdrawn pod stands toward `image` in the status of the plan that withdraws it: as if
    nothing had been queued (nothing was swapped). A retried Failed pod shows Failed again from the next
    plan on, which counts it: the failures a plan decides on are the ones its status reports."""
    assert pod.status is not None
    if same_image(pod.status.sidecar_image, image):
        return PodState.UPDATED
    return PodState.WAITING if pod.ready else PodState.NOT_READY


def _withdrawal(pod: PodFacts) -> Withdrawal:
    """The patch's shape for a pod the plan withdraws (held, or queued unheld toward another image)."""
    heading = heading_to(pod) or ""
    record = pod.record
    recorded = (
        record is not None and record.phase in _BEFORE_SWAP and record.to_image == pod.swap_hold
    )  # the step machine drops it, told by the hold: keep that
    return Withdrawal(
        pod.namespace,
        pod.name,
        heading,
        target=pod.target == heading,
        hold=pod.swap_hold is not None and pod.swap_hold == heading and not recorded,
    )


# --- the plan ----------------------------------------------------------------------------------------


def plan_fleet(
    releases: Sequence[Release],
    pods: Iterable[PodFacts],
    namespaces: Mapping[str, Mapping[str, str]],
    *,
    now: datetime,
) -> FleetPlan:
    """Decide every release at once (overlaps need all of them); `namespaces` maps name -> labels."""
    ordered = sorted(releases, key=precedence)
    governed: dict[str, list[PodFacts]] = {r.name: [] for r in ordered}
    overlaps: dict[str, Counter[str]] = {r.name: Counter() for r in ordered}
    owners: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        if pod.status is None or pod.deleting:
            continue
        ns_labels = namespaces.get(pod.namespace, {})
        selecting = [r for r in ordered if selects(r, pod.labels, ns_labels)]
        if not selecting:
            continue
        owner = selecting[0]
        owners[pod.key] = owner.name
        governed[owner.name].append(pod)
        for loser in selecting[1:]:
            overlaps[loser.name][owner.name] += 1
    by_name = {r.name: r for r in ordered}
    plans = {
        r.name: plan_release(
            r,
            governed[r.name],
            overlaps=tuple(
                Overlap(release=w, priority=by_name[w].spec.priority, pods=n)
                for w, n in sorted(overlaps[r.name].items())
            ),
            now=now,
        )
        for r in ordered
    }
    return FleetPlan(releases=plans, owners=owners)


def plan_release(
    release: Release, pods: Sequence[PodFacts], *, overlaps: tuple[Overlap, ...] = (), now: datetime
) -> ReleasePlan:
    """One release over the pods it governs (injected, not terminating, not won by another release)."""
    image = release.spec.image
    strategy = release.spec.strategy
    ordered = sorted(pods, key=lambda p: (p.namespace, p.name))
    states = {p.key: pod_state(p, image) for p in ordered}
    tally = Counter(states.values())
    matched = len(ordered)
    allowed = allowed_unavailable(strategy, matched)
    goal = matched - held_back(strategy, matched)
    unavailable = sum(1 for p in ordered if at_risk(p))
    failed = tally[PodState.FAILED]
    failure_pause = failed >= strategy.max_failures
    paused = strategy.paused or failure_pause
    quota = max(0, goal - tally[PodState.UPDATED] - tally[PodState.UPGRADING] - failed)
    # Held pods are upgrades not swapped yet: each plan decides them again. Those it would not start now
    # are withdrawn (never lifted, never failed); the rest may be lifted at their swap.
    holding = [p for p in ordered if held(p)]
    committed = sum(1 for p in ordered if states[p.key] is PodState.UPGRADING and not held(p))
    room = goal - tally[PodState.UPDATED] - failed - committed
    stopped = stopped_on_failures(strategy, failed)
    withdrawing = withdrawn(holding, image=image, stopped=stopped, room=room)
    # Queued without a hold toward another image, untouched: retargeted (costs only quota: the pod counts
    # already, at risk, and stays so); onto the image it runs, withdrawn instead (a target it already runs
    # would fail as AlreadyRunning, counted against the release).
    elsewhere = [p for p in ordered if states[p.key] is PodState.QUEUED_ELSEWHERE and not held(p)]
    on_image = [p for p in elsewhere if p.status is not None and same_image(p.status.sidecar_image, image)]
    withdrawing += on_image
    retargets = [] if paused else [p for p in elsewhere if p not in on_image][:quota]
    starts = [Start(p.namespace, p.name, image, retarget=True, hold=False) for p in retargets]
    gone = {p.key for p in withdrawing}
    # The window opens at the swap: pods waiting there (held, Ready, checked, pre-pulled) and kept are
    # lifted within maxUnavailable. A spec pause lifts them too (no new start: they started before it,
    # as upgrades in flight finish), unless a pod failed on the image (stopped).
    at_the_swap = [p for p in holding if at_swap(p) and p.key not in gone]
    lifts = [
        Lift(p.namespace, p.name, p.swap_hold or "") for p in at_the_swap[: max(0, allowed - unavailable)]
    ]
    held_before = len(holding)
    still_held = held_before - len(lifts)  # a withdrawn pod frees its room once its hold is gone
    if not paused:
        # A fresh start is held before its swap: it takes room among the held (at most maxUnavailable, so
        # the next batch pre-pulls while this one swaps), not from maxUnavailable's at-risk count.
        room_held = max(0, allowed - still_held)
        fresh = [p for p in ordered if states[p.key] is PodState.WAITING]
        for pod in fresh[: max(0, min(quota - len(starts), room_held))]:
            starts.append(Start(pod.namespace, pod.name, image))
    started = {s.key for s in starts}
    status = _status(
        release,
        ordered,
        states,
        started,
        withdrawn={p.key: after_withdrawal(p, image) for p in withdrawing},
        goal=goal,
        allowed=allowed,
        unavailable=unavailable,
        held=still_held,
        overlaps=overlaps,
        now=now,
    )
    return ReleasePlan(
        release=release.name,
        pods=states,
        starts=tuple(starts),
        status=status,
        allowed_unavailable=allowed,
        unavailable=unavailable,
        lifts=tuple(lifts),
        held=held_before,
        withdrawals=tuple(_withdrawal(p) for p in withdrawing),
    )


# --- status ------------------------------------------------------------------------------------------


def _names(keys: Iterable[str]) -> str:
    shown = sorted(keys)
    more = f" and {len(shown) - _NAMES_SHOWN} more" if len(shown) > _NAMES_SHOWN else ""
    return ", ".join(shown[:_NAMES_SHOWN]) + more


def previous_images(release: Release, pods: Sequence[PodFacts]) -> tuple[str, ...]:
    """Images to roll back to, most recent first: the image the release last converged to, the images
    its pods run now, then what status already listed; never the spec image, at most the limit."""
    image = release.spec.image
    candidates: list[str] = []
    if release.status.image is not None:
        candidates.append(release.status.image)
    running = Counter(p.status.sidecar_image for p in pods if p.status is not None)
    candidates += sorted(running, key=lambda i: (-running[i], i))
    candidates += release.status.previous_images
    out: list[str] = []
    for candidate in candidates:
        if not same_image(candidate, image) and candidate not in out:
            out.append(candidate)
    return tuple(out[:PREVIOUS_IMAGES_LIMIT])


def _condition(
    old: ReleaseStatus,
    kind: ConditionType,
    status: bool,
    reason: str,
    message: str,
    *,
    gen: int,
    now: datetime,
) -> Condition:
    """As meta.SetStatusCondition: the transition time moves only when the status flips."""
    before = old.condition(kind)
    since = before.since if before is not None and before.status == status else now
    return Condition(
        type=kind, status=status, reason=reason, message=message, since=since, observed_generation=gen
    )


def _status(
    release: Release,
    pods: Sequence[PodFacts],
    states: Mapping[str, PodState],
    started: set[str],
    *,
    withdrawn: Mapping[str, PodState],
    goal: int,
    allowed: int,
    unavailable: int,
    held: int,
    overlaps: tuple[Overlap, ...],
    now: datetime,
) -> ReleaseStatus:
    image = release.spec.image
    strategy = release.spec.strategy
    # The plan's own writes applied: its starts upgrade, its withdrawals are as if never queued.
    final = {k: (PodState.UPGRADING if k in started else withdrawn.get(k, s)) for k, s in states.items()}
    count = Counter(final.values())
    ready = {p.key for p in pods if p.ready}
    failed_keys = [k for k, s in final.items() if s is PodState.FAILED]
    updated, upgrading, failed = count[PodState.UPDATED], count[PodState.UPGRADING], len(failed_keys)
    failure_pause = failed >= strategy.max_failures
    gen = release.generation
    old = release.status

    def cond(kind: ConditionType, status: bool, reason: str, message: str) -> Condition:
        return _condition(old, kind, status, reason, message, gen=gen, now=now)

    failures = f"{failed} pod(s) failed to upgrade to {image}: {_names(failed_keys)}"
    if failure_pause:
        paused = cond(
            ConditionType.PAUSED,
            True,
            "TooManyFailures",
            f"{failures}; maxFailures is {strategy.max_failures}, so no new pods start. Roll back by "
            "setting spec.image to one of status.previousImages, or fix the cause and "
            "`hotupgrade retry -n NAMESPACE POD...`",
        )
    elif strategy.paused:
        paused = cond(
            ConditionType.PAUSED,
            True,
            "PausedBySpec",
            f"spec.strategy.paused is true: no new pods start; {upgrading} upgrade(s) in flight finish",
        )
    else:
        paused = cond(ConditionType.PAUSED, False, "NotPaused", "pods start as the strategy allows")
    if failed:
        reason = "TooManyFailures" if failure_pause else "UpgradesFailed"
        degraded = cond(ConditionType.DEGRADED, True, reason, failures)
    else:
        degraded = cond(ConditionType.DEGRADED, False, "NoFailures", "no pod failed to upgrade to this image")
    done = upgrading == 0 and failed == 0 and updated >= goal
    # What is left once this plan's writes land (its starts and withdrawals included).
    to_go = max(0, goal - updated - upgrading - failed)
    if done and not pods:
        # The pod caches hold only the controller's namespaces (--namespace): say so, it is a likely cause.
        message = "no injected pod matches the selectors in the namespaces the controller watches"
        complete = cond(ConditionType.COMPLETE, True, "NoMatchedPods", message)
    elif done and updated < len(pods):
        # A partition raised after pods moved never moves them back: count the pods, not the partition.
        others = len(pods) - updated
        message = (
            f"{updated} of {len(pods)} pods run {image} (the partition asks for {goal}); "
            f"the other {others} keep their image"
        )
        complete = cond(ConditionType.COMPLETE, True, "PartitionReached", message)
    elif done:
        complete = cond(ConditionType.COMPLETE, True, "AllPodsUpdated", f"all {updated} pods run {image}")
    else:
        reason = "UpgradesFailed" if failed and to_go == 0 and upgrading == 0 else "PodsRemaining"
        message = f"{updated} of {goal} pods run {image}"
        complete = cond(ConditionType.COMPLETE, False, reason, message)
    waiting = [k for k, s in final.items() if s in (PodState.NOT_READY, PodState.FINISHING)]
    startable = any(s is PodState.WAITING for s in final.values())
    budget = f"{unavailable} unavailable, maxUnavailable {allowed}"
    if upgrading:
        progressing = cond(
            ConditionType.PROGRESSING,
            True,
            "RollingOut",
            f"{upgrading} pod(s) upgrading to {image} ({budget})",
        )
    elif done:
        progressing = cond(ConditionType.PROGRESSING, False, "RolloutComplete", complete.message)
    elif failure_pause or strategy.paused:
        progressing = cond(ConditionType.PROGRESSING, False, paused.reason, paused.message)
    elif to_go > 0 and startable:
        # Room is maxUnavailable less the unavailable pods for a swap, less the held pods for a start.
        message = f"{to_go} pod(s) to go; waiting for room ({budget}, {held} held before their swap)"
        progressing = cond(ConditionType.PROGRESSING, True, "WaitingForAvailability", message)
    elif to_go > 0:
        message = f"{to_go} pod(s) to go; waiting for pods not Ready or finishing another upgrade: "
        progressing = cond(ConditionType.PROGRESSING, True, "WaitingForPods", message + _names(waiting))
    else:
        progressing = cond(ConditionType.PROGRESSING, False, "UpgradesFailed", failures)
    return ReleaseStatus(
        observed_generation=gen,
        image=image,
        matched=len(pods),
        updated=updated,
        ready=len(ready),
        updated_ready=sum(1 for k, s in final.items() if s is PodState.UPDATED and k in ready),
        upgrading=upgrading,
        failed=failed,
        previous_images=previous_images(release, pods),
        overlaps=overlaps,
        conditions=(progressing, paused, complete, degraded),
    )


def invalid_spec_status(old: ReleaseStatus, *, generation: int, why: str, now: datetime) -> ReleaseStatus:
    """The status of a release whose spec cannot be parsed: it governs no pod, and says why."""

    def cond(kind: ConditionType, status: bool) -> Condition:
        return _condition(old, kind, status, "InvalidSpec", why, gen=generation, now=now)

    conditions = (
        cond(ConditionType.PROGRESSING, False),
        cond(ConditionType.PAUSED, False),
        cond(ConditionType.COMPLETE, False),
        cond(ConditionType.DEGRADED, True),
    )
    return replace(old, observed_generation=generation, conditions=conditions)
