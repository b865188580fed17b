"""The upgrade step machine: `next_step(observed, policy) -> action`. Pure, no I/O, no clock.

The reconciler calls it after every change and every requeue; it re-derives everything from the pod,
the agents' status and the `hotupgrade.io/upgrade` record, which is why a restarted controller resumes
where the last one stopped. Steps (issue 5): checks -> the pod's PodDisruptionBudgets have room
(controller.budgetgate; no deadline) -> pre-pull (controller.prepull) -> standby gets
the target -> new agent serves -> old Envoy retired -> old container gets the empty image -> status
swapped. A target that can never work (not an image reference, the empty image, not allowed, a native
sidecar on a kubelet before 1.32) is refused before anything changes, and one already running is
reported, never passed over in silence. An upgrade a release holds before its swap
(`hotupgrade.io/swap-hold`) and then withdraws has changed nothing: it is dropped, record and all, not
failed. Which image a container runs is decided by image ID first
(controller.observed); a kubelet that never acts on an image change is caught after `kubelet_grace`.
Before setting the standby to the target and the old slot to the empty image, the step waits out the
kubelet's crash-loop back-off for that container and image (controller.kubeletbackoff) rather than
restart into it; a start the kubelet holds anyway, before the target ever ran, is waited for too.
Before the take-over every failure rolls the standby back, but only once the serving agent fenced the
standby's take-over (docs/contract.md "The take-over fence": deciding "not taken over yet" and then
rolling back is a race the controller's view, which the API server may publish late, cannot win); a
rollback ends only with the old Envoy seen serving, else it repairs forward. After the take-over, rolling
back would cut traffic, so failures leave the new Envoy serving and record why. Every image change also
counts the restart it causes in `hotupgrade.io/planned-restarts` (controller.restarts), in the same patch.
Every Event a step emits is also written into the record it writes (controller.events), so the shell can
post it after the write, and again after a crash. The shell observes the pod alone first: where the
decision reads the agents' status, the pre-pull pod, the node or the budget gate, `next_step` answers
`Observe`, so the many pods with nothing to do cost no agent calls, and the decision is taken once, on a
snapshot that holds all it reads.
"""

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from controller.actions import (
    Action,
    Complete,
    CreatePrePullPod,
    Event,
    Fail,
    FenceTakeOver,
    Noop,
    Observe,
    PatchStandbyImage,
    ResetOldToEmpty,
    RollBack,
    SetImage,
    WaitFor,
    Withdraw,
)
from controller.events import with_owed_event
from controller.keys import (
    ANNOTATION_ABORT,
    ANNOTATION_RETRY,
    ANNOTATION_STATUS,
    ANNOTATION_SWAP_HOLD,
    ANNOTATION_TARGET_IMAGE,
)
from controller.kubelet import (
    ignored_image_change,
    replacing_since,
    restarts_native_sidecar_on_image_change,
    unsupported_native_sidecar,
)
from controller.kubeletbackoff import Hold, after_start, hold, memory_in, slot_of
from controller.observed import (
    AgentView,
    ContainerView,
    KubeletEvent,
    NodeView,
    ObservedPod,
    PrePullView,
    Seen,
    parent_shutdown_seconds,
    runs_fresh,
    runs_image,
    same_image,
    same_image_id,
    still_the_container,
)
from controller.policy import Policy
from controller.prepull import (
    PULL_FAILURES,
    pre_pull_failure,
    pre_pull_pod_name,
    pre_pull_state,
    pull_as,
    pulled,
)
from controller.record import SWAP_WAIT, Phase, Reason, UpgradeRecord, record_in
from controller.restarts import PlannedRestarts, plan_restart
from releaseapi.apitime import format_time
from releaseapi.imageref import is_reference
from webhook.injection_status import InjectionStatus, InvalidStatusError, parse_status

# Container states after which the kubelet will not get the container running without a change.
FATAL_WAITING = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerError",
        "CreateContainerConfigError",
        "RunContainerError",
        "CrashLoopBackOff",
        "PostStartHookError",
    }
)


def next_step(pod: ObservedPod, policy: Policy) -> Action | Observe:
    """Decide the one next thing to do for this pod, or say what the snapshot lacks to decide it."""
    try:
        return with_owed_event(_decide(pod, policy))
    except _UnobservedError as missing:
        return missing.observe


def _decide(pod: ObservedPod, policy: Policy) -> Action:
    if pod.deleting:
        return Noop("pod is terminating")
    raw_status = pod.annotations.get(ANNOTATION_STATUS)
    if raw_status is None:
        return Noop("pod is not injected")
    record = current_record(pod)
    target = pod.annotations.get(ANNOTATION_TARGET_IMAGE) or None
    withdrawn = _withdrawn(pod, record, target, policy)
    if withdrawn is not None:
        return withdrawn
    try:
        status = parse_status(raw_status)
    except InvalidStatusError as exc:
        return _invalid_status(pod, record, target, str(exc))
    if record is not None and record.in_flight and record.phase is not Phase.PENDING:
        return _continue(pod, status, record, policy)
    return _start(pod, status, record, target, policy)


def drain_deadline_seconds(old: ContainerView | None, policy: Policy) -> float:
    """How long draining may take: the old Envoy's parent-shutdown time plus a grace period."""
    shutdown = parent_shutdown_seconds(old, policy.default_parent_shutdown) if old else 0
    return float(shutdown or policy.default_parent_shutdown) + policy.drain_grace


def status_after_take_over(status: InjectionStatus, record: UpgradeRecord) -> InjectionStatus:
    """The status annotation once `record.new_container` serves `record.to_image` (idempotent)."""
    if status.active == record.new_container:
        return replace(status, sidecar_image=record.to_image)
    return status.swapped(sidecar_image=record.to_image)


def current_record(pod: ObservedPod) -> UpgradeRecord | None:
    """The pod's upgrade record; a corrupted one counts as none (the checks refuse unsafe starts)."""
    return record_in(pod.annotations)


# --- internals -------------------------------------------------------------------------------


class _UnobservedError(Exception):
    """The decision reached a read of something the snapshot was taken without."""

    def __init__(self, observe: Observe) -> None:
        super().__init__(observe)
        self.observe = observe


def _agents(pod: ObservedPod) -> Mapping[str, AgentView]:
    """The agents' status; every read of it goes through here, so an unasked pod answers Observe."""
    if pod.agents is None:
        raise _UnobservedError(Observe(agents=True))
    return pod.agents


def _pre_pull(pod: ObservedPod, record: UpgradeRecord) -> PrePullView | None:
    """The pre-pull pod of `record` (None when the record names none)."""
    if pod.pre_pull is None and record.pre_pull_pod:
        raise _UnobservedError(Observe(pre_pull_pod=record.pre_pull_pod))
    return pod.pre_pull


def _kubelet_events(pod: ObservedPod) -> tuple[KubeletEvent, ...]:
    if pod.kubelet_events is None:
        raise _UnobservedError(Observe(kubelet_events=True))
    return pod.kubelet_events


def _node(pod: ObservedPod) -> NodeView | None:
    """The pod's node (None when the pod has none yet)."""
    if not pod.node_name:
        return None
    if pod.node is None:
        raise _UnobservedError(Observe(node=True))
    return pod.node


def _elapsed(record: UpgradeRecord, now: datetime) -> float:
    return (now - record.phase_since).total_seconds()


def _event(reason: str, message: str, *, warning: bool = False) -> Event:
    return Event(type="Warning" if warning else "Normal", reason=reason, message=message)


def _invalid_status(pod: ObservedPod, record: UpgradeRecord | None, target: str | None, why: str) -> Action:
    if target is None:
        return Noop(f"status annotation unusable ({why}) and no target")
    if record is not None and record.to_image == target and record.phase is Phase.FAILED:
        return Noop(f"status annotation unusable ({why}); already recorded")
    message = f"cannot upgrade: {ANNOTATION_STATUS} is unusable: {why}"
    failed = UpgradeRecord(
        phase=Phase.FAILED,
        from_image="unknown",
        to_image=target,
        attempt=(record.attempt + 1) if record and record.to_image == target else 1,
        started=pod.now,
        phase_since=pod.now,
        finished=pod.now,
        message=message,
        reason=Reason.INVALID_STATUS,
        old_container="unknown",
        new_container="unknown",
        old_slot="unknown",
        new_slot="unknown",
        empty_image="unknown",
        retry_token=pod.annotations.get(ANNOTATION_RETRY),
        abort_token=pod.annotations.get(ANNOTATION_ABORT),
    )
    return Fail(record=failed, event=_event("UpgradeFailed", message, warning=True))


def _start(
    pod: ObservedPod,
    status: InjectionStatus,
    record: UpgradeRecord | None,
    target: str | None,
    policy: Policy,
) -> Action:
    """No upgrade past its checks: start one if the target asks for it, or keep a Pending one going."""
    pending = record if record is not None and record.phase is Phase.PENDING else None
    retry = pod.annotations.get(ANNOTATION_RETRY)
    if target is None:
        if pending is not None:
            return _fail(
                pod, pending, Reason.ABORTED, "target image annotation removed before the upgrade began"
            )
        return Noop("no target image")
    if pending is None and record is not None:
        retried = retry is not None and retry != record.retry_token
        if record.to_image == target and not retried:
            return Noop(f"upgrade to {target} already {record.phase}")  # no retry storm
        if retried and record.phase is Phase.FAILED and record.taken_over and record.to_image == target:
            return _resume_drain(pod, record, retry)
        if record.phase is Phase.COMPLETED and record.to_image == target:
            return Noop(f"upgrade to {target} already Completed")  # a retry has nothing to redo
    if pending is not None and pending.to_image != target:
        pending = None  # a new target supersedes a Pending upgrade that has not touched the pod
    if pending is not None:
        base = pending
    else:
        base = UpgradeRecord(
            phase=Phase.PENDING,
            from_image=status.sidecar_image,
            to_image=target,
            attempt=(record.attempt + 1) if record is not None and record.to_image == target else 1,
            started=pod.now,
            phase_since=pod.now,
            message="checking",
            old_container=status.active,
            new_container=status.standby,
            old_slot=status.slots[status.active],
            new_slot=status.slots[status.standby],
            empty_image=status.empty_image,
            retry_token=retry,
            abort_token=pod.annotations.get(ANNOTATION_ABORT),
        )
    abort = pod.annotations.get(ANNOTATION_ABORT)
    if pending is not None and abort is not None and abort != pending.abort_token:
        return _fail(
            pod, replace(pending, abort_token=abort), Reason.ABORTED, "aborted before the upgrade began"
        )
    refused = _refuse_target(pod, status, base, policy)
    if refused is not None:
        return refused
    return _check(pod, status, base, policy, already_pending=pending is not None)


def _refuse_target(
    pod: ObservedPod, status: InjectionStatus, base: UpgradeRecord, policy: Policy
) -> Fail | None:
    """Targets that can never be upgraded to are refused at once, before anything waits or changes."""
    target = base.to_image
    if not is_reference(target):
        why = f"{target!r} is not an image reference ([registry/]repository[:tag][@digest])"
        return _fail(pod, base, Reason.INVALID_TARGET, why)
    if same_image(target, status.empty_image):
        why = (
            f"{target} is the empty image of the standby slot: it runs no agent and no Envoy, "
            "so it could never take over"
        )
        return _fail(pod, base, Reason.INVALID_TARGET, why)
    if not policy.allowlist.allows(target):
        return _fail(pod, base, Reason.NOT_ALLOWED, f"image {target} is not in the controller's allowlist")
    active = pod.containers.get(status.active)
    # The kubelet's view counts too: a digest it reports, or the tag it names the running image by (after
    # an upgrade to `x@sha256:..`, containerd names that image by a tag it carries on the node).
    running = active is not None and runs_image(active, target)
    if same_image(target, status.sidecar_image) or running:
        return _already_running(pod, base, status.active)
    return None


def _already_running(pod: ObservedPod, record: UpgradeRecord, active: str, *, resolved: str = "") -> Fail:
    why = (
        f"{record.to_image}{resolved} is already running in {active}: nothing to upgrade. An upgrade does "
        "not pull a tag again: if the tag was pushed again, name a new tag or a digest (repo@sha256:...)"
    )
    return _fail(pod, record, Reason.ALREADY_RUNNING, why, event_reason="TargetAlreadyRunning")


def _check(
    pod: ObservedPod, status: InjectionStatus, base: UpgradeRecord, policy: Policy, *, already_pending: bool
) -> Action:
    """Step 1: permanent refusals fail at once, passing conditions wait (bounded by step_timeout)."""
    target = base.to_image
    old = pod.containers.get(base.old_container)
    new = pod.containers.get(base.new_container)
    if old is None or new is None:
        missing = base.old_container if old is None else base.new_container
        return _fail(
            pod, base, Reason.INVALID_STATUS, f"container {missing} named in {ANNOTATION_STATUS} is missing"
        )
    if new.image != status.empty_image:
        why = f"standby container {new.name} runs {new.image}, not the empty image {status.empty_image}"
        return _fail(pod, base, Reason.STANDBY_NOT_EMPTY, why)
    if new.native_sidecar:
        node = _node(pod)
        version = node.kubelet_version if node is not None else None
        if node is not None and version and restarts_native_sidecar_on_image_change(version) is False:
            why = unsupported_native_sidecar(version, node.name)
            return _fail(pod, base, Reason.KUBELET_UNSUPPORTED, why)
    waiting = _not_yet(pod, base, old, new)
    if waiting is not None:
        # After a wait with no deadline (a budget, a release's swap hold) the checks' clock restarts.
        after_budget = already_pending and base.message.startswith((BUDGET_WAIT, SWAP_WAIT))
        if already_pending and not after_budget and _elapsed(base, pod.now) > policy.step_timeout:
            why = f"checks did not pass within {policy.step_timeout:.0f}s: {waiting}"
            return _fail(pod, base, Reason.CHECKS_TIMEOUT, why)
        message = f"waiting: {waiting}"
        if already_pending and base.message == message:
            return WaitFor(reason=message, requeue_after=policy.poll_interval)
        waited = base.moved(Phase.PENDING, now=pod.now, message=message) if after_budget else None
        return WaitFor(
            reason=message,
            requeue_after=policy.poll_interval,
            record=waited or replace(base, message=message),
        )
    lift = _lift_fence(pod, base, policy)
    if lift is not None:
        return lift
    held = _held_by_budget(pod, base, policy)
    if held is not None:
        return held
    started = _event(
        "UpgradeStarted", f"upgrading sidecar {base.from_image} -> {target} (attempt {base.attempt})"
    )
    if policy.pre_pull:
        if not pod.node_name:
            return _swap_standby(pod, base, new, started, policy, note="pre-pull skipped: pod has no node")
        name = pre_pull_pod_name(pod.uid, target)
        record = base.moved(
            Phase.PRE_PULLING,
            now=pod.now,
            message=f"pre-pulling {target} on {pod.node_name}",
            pre_pull_pod=name,
        )
        return CreatePrePullPod(
            pod_name=name,
            node_name=pod.node_name,
            image=target,
            record=record,
            requeue_after=policy.poll_interval,
            event=started,
            pull_as=pull_as(pod, new),
        )
    return _swap_standby(pod, base, new, started, policy)


def _not_yet(pod: ObservedPod, base: UpgradeRecord, old: ContainerView, new: ContainerView) -> str | None:
    """The first check that has not passed yet, or None when the upgrade may begin."""
    if not pod.pod_ready:
        return "pod is not Ready"
    if not new.running:
        return f"standby container {new.name} is not running"
    agent = _agents(pod).get(base.old_slot)
    if agent is None or not agent.reachable:
        why = agent.error if agent is not None and agent.error else "no answer"
        return f"agent of active slot {base.old_slot} unreachable ({why})"
    if agent.role != "active" or agent.phase != "serving":
        return f"agent of active slot {base.old_slot} is {agent.role}/{agent.phase}, not active/serving"
    if agent.active_slot is not None and agent.active_slot != base.old_slot:
        return f"agent state says slot {agent.active_slot} is active, status annotation says {base.old_slot}"
    del old  # the old container's state is the agent's business; it answered active/serving
    return None


BUDGET_WAIT = "waiting for PodDisruptionBudget"  # how a Pending record held by a budget begins


def _held_by_budget(pod: ObservedPod, base: UpgradeRecord, policy: Policy) -> WaitFor | None:
    """The last check before anything changes: every PodDisruptionBudget selecting the pod has room (the
    shell's gate, controller.budgetgate). No deadline: the upgrade starts once room appears; one Event."""
    if pod.budget is None:
        raise _UnobservedError(Observe(budget=True))
    if pod.budget.admitted:
        return None
    message = f"waiting for {pod.budget.message}"
    if base.message == message:
        return WaitFor(reason=message, requeue_after=policy.poll_interval)
    event = None if base.message.startswith(BUDGET_WAIT) else _event("WaitingForDisruptionBudget", message)
    held = base.moved(Phase.PENDING, now=pod.now, message=message)
    return WaitFor(reason=message, requeue_after=policy.poll_interval, record=held, event=event)


def _swap_standby(
    pod: ObservedPod,
    base: UpgradeRecord,
    new: ContainerView,
    event: Event | None,
    policy: Policy,
    *,
    note: str = "",
) -> Action:
    """Set the standby to the target, once its release allows the swap and the kubelet's crash-loop back-off
    would let it start at once."""
    release_hold = _held_for_swap(pod, base, policy)
    if release_hold is not None:
        return release_hold
    held = _kubelet_hold(pod, new, base.to_image)
    if held is None:
        return _take_over_patch(pod, base, new, event, note=note)
    if held.seconds > policy.step_timeout:  # nothing touched yet: say when a retry can work
        why = (
            f"the kubelet would hold {base.to_image} in {new.name} in its crash-loop back-off for another "
            f"{held.seconds:.0f}s (until {format_time(held.until)}), longer than the step timeout "
            f"({policy.step_timeout:.0f}s); standby untouched, set {ANNOTATION_RETRY} after that time"
        )
        return _fail(pod, base, Reason.KUBELET_BACK_OFF, why)
    return _wait_out(pod, base, held, before=f"setting it to {base.to_image}")


def _held_for_swap(pod: ObservedPod, base: UpgradeRecord, policy: Policy) -> WaitFor | None:
    """A release holds this swap (`hotupgrade.io/swap-hold` names the target): wait, checked and pre-pulled,
    until the release lifts it within maxUnavailable (controller.rollout). No deadline; the record says so
    once. Nothing is changed yet, so the pod is not at risk."""
    if pod.annotations.get(ANNOTATION_SWAP_HOLD) != base.to_image:
        return None
    message = f"{SWAP_WAIT} to {base.to_image} (maxUnavailable)"
    if base.message == message:
        return WaitFor(reason=message, requeue_after=policy.poll_interval)
    return WaitFor(reason=message, requeue_after=policy.poll_interval, record=replace(base, message=message))


def _withdrawn(
    pod: ObservedPod, record: UpgradeRecord | None, target: str | None, policy: Policy
) -> Withdraw | None:
    """The release withdrew an upgrade it holds before the swap (the hold still names the record's image,
    the target no longer does: controller.rollout.Withdraw, e.g. a rollback onto the image the pod runs).
    Pending or PrePulling, it changed no container, so it is dropped, not failed: a Failed record would
    count against the release (and a retarget onto the running image would fail as AlreadyRunning)."""
    if record is None or record.phase not in (Phase.PENDING, Phase.PRE_PULLING):
        return None
    if pod.annotations.get(ANNOTATION_SWAP_HOLD) != record.to_image or target == record.to_image:
        return None
    now = f"the target is now {target}" if target is not None else "the target was removed"
    return Withdraw(
        image=record.to_image,
        reason=f"upgrade to {record.to_image} withdrawn by its release before the swap ({now})",
        requeue_after=policy.poll_interval,
        delete_pre_pull=record.pre_pull_pod,
    )


def _kubelet_hold(pod: ObservedPod, container: ContainerView, image: str) -> Hold | None:
    """How long the kubelet would hold `container` starting `image` now (controller.kubeletbackoff)."""
    return hold(memory_in(pod.annotations), slot_of(container, pod.annotations), image, pod.now)


def _wait_out(pod: ObservedPod, record: UpgradeRecord, held: Hold, *, before: str) -> WaitFor:
    """Wait for the kubelet's back-off to pass instead of restarting into it: the record says so once
    (its message is fixed by the hold's end), with an Event; each requeue only says how long is left."""
    ago = (pod.now - held.started).total_seconds()
    reason = (
        f"waiting {held.seconds:.1f} s for the kubelet's crash-loop back-off on {held.container} "
        f"({held.image} started there {ago:.0f} s ago)"
    )
    message = (
        f"waiting until {format_time(held.until)} for the kubelet's crash-loop back-off on {held.container} "
        f"before {before}: {held.image} started there at {format_time(held.started)}, and the kubelet holds "
        f"another start of it for {held.backoff:.0f} s after the container's last exit "
        f"({format_time(held.last_exit)})"
    )
    said = f"{reason}, before {before} (until {format_time(held.until)})"
    return _wait_saying_once(record, reason, message, said, requeue_after=held.seconds, hold=held)


def _wait_saying_once(
    record: UpgradeRecord,
    reason: str,
    message: str,
    event_message: str,
    *,
    requeue_after: float,
    hold: Hold | None = None,
) -> WaitFor:
    """Wait; the first time, write `message` into the record with a WaitingForKubeletBackOff Event."""
    if record.message == message:
        return WaitFor(reason=reason, requeue_after=requeue_after, hold=hold)
    event = _event("WaitingForKubeletBackOff", event_message)
    written = replace(record, message=message)
    return WaitFor(reason=reason, requeue_after=requeue_after, record=written, event=event, hold=hold)


def _take_over_patch(
    pod: ObservedPod,
    base: UpgradeRecord,
    new: ContainerView,
    event: Event | None,
    *,
    note: str = "",
    message: str = "",
    reason: Reason | None = None,
) -> SetImage:
    """Set the standby to the target (`reason`: why a rollback's standby is set to it again)."""
    message = message or f"standby {new.name} set to {base.to_image}; waiting for its agent to take over"
    record = base.moved(
        Phase.TAKING_OVER,
        now=pod.now,
        message=f"{message} ({note})" if note else message,
        reason=reason,
        standby_id_before=new.container_id,
        standby_restarts_before=new.restart_count,
        standby_image_id_before=new.image_id,
        pre_pull_pod=None,
    )
    return _set_image(
        PatchStandbyImage,
        pod,
        new,
        base.to_image,
        record,
        requeue_after=0.5,
        event=event,
        delete_pre_pull=base.pre_pull_pod,
        planned=plan_restart(pod.annotations, new.name),
    )


def _fail(
    pod: ObservedPod,
    record: UpgradeRecord,
    reason: Reason,
    why: str,
    *,
    status: InjectionStatus | None = None,
    event_reason: str = "UpgradeFailed",
) -> Fail:
    failed = record.moved(Phase.FAILED, now=pod.now, message=why, reason=reason)
    return Fail(
        record=failed,
        event=_event(event_reason, f"{reason}: {why}", warning=True),
        status=status,
        delete_pre_pull=record.pre_pull_pod,
    )


SetImageKind = type[PatchStandbyImage] | type[ResetOldToEmpty] | type[RollBack]


def _set_image(
    kind: SetImageKind,
    pod: ObservedPod,
    container: ContainerView,
    image: str,
    record: UpgradeRecord,
    *,
    requeue_after: float,
    event: Event | None = None,
    delete_pre_pull: str | None = None,
    planned: PlannedRestarts | None = None,
) -> SetImage:
    """Set `container`'s image (the current one `test`ed, so a stale view fails), recording `record` and
    the kubelet's back-off entry the restart updates (controller.kubeletbackoff)."""
    memory = after_start(memory_in(pod.annotations), slot_of(container, pod.annotations), image, pod.now)
    return kind(
        container=container.name,
        spec_path=container.spec_path,
        expect_image=container.image,
        image=image,
        record=record,
        event=event,
        requeue_after=requeue_after,
        delete_pre_pull=delete_pre_pull,
        planned=planned,
        kubelet_backoff=memory,
    )


def _to_empty(
    kind: type[ResetOldToEmpty] | type[RollBack],
    pod: ObservedPod,
    container: ContainerView,
    record: UpgradeRecord,
    policy: Policy,
    *,
    event: Event | None = None,
    planned: PlannedRestarts | None = None,
) -> SetImage:
    return _set_image(
        kind,
        pod,
        container,
        record.empty_image,
        record,
        requeue_after=policy.poll_interval,
        event=event,
        planned=planned,
    )


def _rollback_restarts(record: UpgradeRecord, new: ContainerView) -> int:
    """Restarts the rollback adds, net of the swap's planned one that never happened: +1 when a target
    container was started; 0 when the kubelet stopped the old one but never started the target (a pull
    failure: the rollback's start is the swap's restart); -1 when the kubelet ignored the swap."""
    seen = record.standby_seen
    new_id = new.container_id is not None and new.container_id != seen.container_id
    more_restarts = seen.restart_count is not None and new.restart_count > seen.restart_count
    if seen.container_id is None or new_id or more_restarts:
        return 1
    return -1 if still_the_container(new, seen) else 0


def fence_token(record: UpgradeRecord) -> str:
    """The identity of one upgrade attempt's take-over, as a fence names it (docs/contract.md)."""
    return f"{record.new_slot}:{record.attempt}@{format_time(record.started)}"


def _fence_first(pod: ObservedPod, record: UpgradeRecord, why: str, policy: Policy) -> Action | None:
    """Before a rollback undoes a standby image change: None once the serving agent shows our fence of
    the new slot (or cannot fence: schema before 1.4), else ask for it; never roll back without it."""
    old = _agents(pod).get(record.old_slot)
    token = fence_token(record)
    if old is not None and old.reachable and not old.fences:
        return None  # an agent before the fence: roll back as before; the check after it still guards
    if _fenced(pod, record):
        return None
    if _elapsed(record, pod.now) > 2 * policy.step_timeout:
        answer = "did not answer" if old is None or not old.reachable else "did not fence it"
        stuck = (
            f"{why}; not rolled back: the agent of slot {record.old_slot} {answer}, so slot "
            f"{record.new_slot}'s take-over could not be fenced and a rollback might leave no Envoy"
        )
        return _fail(pod, record, Reason.TAKE_OVER_STUCK, stuck)
    return FenceTakeOver(
        agent_slot=record.old_slot,
        slot=record.new_slot,
        token=token,
        requeue_after=min(policy.poll_interval, 0.5),
        reason=f"rolling back ({why}) once slot {record.new_slot}'s take-over is fenced",
    )


def _fenced(pod: ObservedPod, record: UpgradeRecord) -> bool:
    """Whether the serving agent shows this attempt's fence of the new slot."""
    old = _agents(pod).get(record.old_slot)
    return old is not None and old.fence_slot == record.new_slot and old.fence_token == fence_token(record)


def _lift_fence(pod: ObservedPod, record: UpgradeRecord, policy: Policy) -> FenceTakeOver | None:
    """A fence of an earlier, rolled-back attempt on the slot about to be set to an image is lifted
    first (the slot has run the empty image since, so no agent of that attempt is left)."""
    agent = _agents(pod).get(record.old_slot)
    if agent is None or not agent.reachable or agent.fence_slot != record.new_slot:
        return None
    return FenceTakeOver(
        agent_slot=record.old_slot,
        slot=record.new_slot,
        token=agent.fence_token or "",
        lift=True,
        requeue_after=min(policy.poll_interval, 0.1),
        reason=f"lifting the fence of slot {record.new_slot} before setting it to {record.to_image}",
    )


def _roll_back(pod: ObservedPod, record: UpgradeRecord, reason: Reason, why: str, policy: Policy) -> Action:
    """Put the standby back on the empty image once its take-over is fenced (docs/contract.md)."""
    new = pod.containers.get(record.new_container)
    if new is None or new.image == record.empty_image:
        return _fail(pod, record, reason, f"{why}; standby untouched")
    unfenced = _fence_first(pod, record, why, policy)
    if unfenced is not None:
        return unfenced
    rolling = record.moved(
        Phase.ROLLING_BACK,
        now=pod.now,
        message=f"rolling back: {why}",
        reason=reason,
        rollback_from_id=new.container_id,
        rollback_from_restarts=new.restart_count,
        rollback_from_image_id=new.image_id,
        pre_pull_pod=None,
    )
    event = _event("UpgradeFailed", f"{reason}: {why}; rolling back", warning=True)
    delta = _rollback_restarts(record, new)
    return _set_image(
        RollBack,
        pod,
        new,
        record.empty_image,
        rolling,
        requeue_after=policy.poll_interval,
        event=event,
        delete_pre_pull=record.pre_pull_pod,
        planned=plan_restart(pod.annotations, new.name, delta) if delta else None,
    )


def status_lags(new: ContainerView, seen: Seen) -> bool:
    """The pod status still shows the standby's instance from before the image change, though the new
    slot's agent answers (it runs only in a target container). The kubelet publishes a pod's status when a
    sync starts, and the sync that started the target was blocked in its postStart hook until the agent
    failed: rolling back on this status would take the target's instance, once reported, for the rollback's
    fresh container, and miss the back-off to wait out (`rollback_hold`)."""
    return seen.container_id is not None and new.container_id == seen.container_id


def rollback_hold(pod: ObservedPod, record: UpgradeRecord, new: ContainerView, policy: Policy) -> Hold | None:
    """The kubelet's back-off the rollback of a failed agent's container should wait out first, or None.

    Only while a target instance runs: its agent failed but stays up (agent/hook.py), so the pod is Ready
    and the old Envoy serves; the rollback kills it and starts the empty image in one sync, and a start
    the kubelet holds leaves the slot NotReady for the hold. A container that is not running gains nothing
    from waiting, and a hold past the step timeout is not waited for (the rollback goes ahead). Only for a
    failed agent: one still taking over (an abort, a timeout) could take the listeners meanwhile."""
    if not new.running or new.container_id is None or new.container_id == record.standby_seen.container_id:
        return None
    held = _kubelet_hold(pod, new, record.empty_image)
    return held if held is not None and held.seconds <= policy.step_timeout else None


def _continue(pod: ObservedPod, status: InjectionStatus, record: UpgradeRecord, policy: Policy) -> Action:
    abort = pod.annotations.get(ANNOTATION_ABORT)
    if abort is not None and abort != record.abort_token and record.phase is not Phase.ROLLING_BACK:
        consumed = replace(record, abort_token=abort)
        if record.phase in (Phase.PRE_PULLING, Phase.TAKING_OVER) and not _new_agent_owns_traffic(
            pod, record
        ):
            return _roll_back(pod, consumed, Reason.ABORTED, "aborted by user", policy)
        message = f"abort ignored: the new Envoy already took over; finishing forward ({record.message})"
        return WaitFor(reason=message, requeue_after=0.1, record=replace(consumed, message=message))
    if record.phase is Phase.PRE_PULLING:
        return _pre_pulling(pod, record, policy)
    if record.phase is Phase.TAKING_OVER:
        return _taking_over(pod, record, policy)
    if record.phase is Phase.DRAINING:
        return _draining(pod, status, record, policy)
    if record.phase is Phase.RESETTING:
        return _resetting(pod, status, record, policy)
    return _rolling_back(pod, record, policy)


def _pre_pulling(pod: ObservedPod, record: UpgradeRecord, policy: Policy) -> Action:
    new = pod.containers.get(record.new_container)
    if new is None or new.image != record.empty_image:
        shown = new.image if new else "missing"
        return _fail(pod, record, Reason.STANDBY_CHANGED, f"standby changed to {shown} during pre-pull")
    pull = _pre_pull(pod, record)
    if (pull is None or not pull.exists) and record.message.startswith(SWAP_WAIT):
        # Pulled before its release held the swap (the wait has no deadline): a pre-pull pod deleted or
        # garbage-collected since changes nothing, where its step timeout would fail a held upgrade.
        return _swap_standby(pod, record, new, None, policy, note=f"pre-pulled on {pod.node_name}")
    if pull is not None and pull.exists and pulled(pull):
        # A tag the node had never seen resolves only now: the pre-pull pod's image ID is the target's
        # digest. The same ID as the serving container's is the image already running (nothing touched).
        active = pod.containers.get(record.old_container)
        if active is not None and same_image_id(pull.image_id, active.image_id):
            return _already_running(pod, record, record.old_container, resolved=f" ({pull.image_id})")
        return _swap_standby(pod, record, new, None, policy, note=f"pre-pulled on {pod.node_name}")
    failure = pre_pull_failure(pull) if pull is not None and pull.exists else None
    if failure is not None:
        why = f"pre-pull of {record.to_image} on {pod.node_name} failed: {failure}"
        return _fail(pod, record, Reason.PRE_PULL_FAILED, why)
    if _elapsed(record, pod.now) > policy.step_timeout:
        last = pre_pull_state(pull) if pull is not None and pull.exists else "its pod is gone"
        why = (
            f"pre-pull of {record.to_image} on {pod.node_name} did not finish within "
            f"{policy.step_timeout:.0f}s (last seen: {last})"
        )
        return _fail(pod, record, Reason.PRE_PULL_TIMEOUT, why)
    if (pull is None or not pull.exists) and pod.node_name and record.pre_pull_pod:
        return CreatePrePullPod(
            pod_name=record.pre_pull_pod,
            node_name=pod.node_name,
            image=record.to_image,
            record=None,
            requeue_after=policy.poll_interval,
        )
    return WaitFor(reason="pre-pull running", requeue_after=policy.poll_interval)


def pre_pull_refused(pod: ObservedPod, why: str) -> Action:
    """The API server refused to create the pre-pull pod (admission, quota, RBAC): fail now, naming it."""
    record = current_record(pod)
    if record is None or record.phase is not Phase.PRE_PULLING or not record.pre_pull_pod:
        return Noop("no pre-pull in flight")
    message = f"pre-pull pod {record.pre_pull_pod} for {record.to_image} was refused: {why}"
    return with_owed_event(_fail(pod, record, Reason.PRE_PULL_FAILED, message))


def _new_agent_owns_traffic(pod: ObservedPod, record: UpgradeRecord) -> bool:
    """Whether the new slot's Envoy may already hold the listeners (then rollback would cut traffic)."""
    agents = _agents(pod)
    new_agent = agents.get(record.new_slot)
    owns = new_agent is not None and new_agent.reachable
    if owns and new_agent and (new_agent.role == "active" or new_agent.phase in ("taking-over", "serving")):
        return True
    return any(a.reachable and a.active_slot == record.new_slot for a in agents.values())


def _exited_since_change(new: ContainerView, seen: Seen) -> bool:
    """A container started after the image change has already ended (an agent exits only after its
    slot failed or on SIGTERM; neither belongs to a take-over that is going well)."""
    if new.running or new.terminated_reason is None or new.container_id is None:
        return False
    return new.container_id != seen.container_id


def _taking_over(pod: ObservedPod, record: UpgradeRecord, policy: Policy) -> Action:
    """Step 4: new containerID running and its agent active/serving, or roll back."""
    new = pod.containers.get(record.new_container)
    if new is None:
        return _fail(
            pod, record, Reason.STANDBY_CHANGED, f"standby container {record.new_container} disappeared"
        )
    if new.image != record.to_image:
        return _roll_back(
            pod,
            record,
            Reason.STANDBY_CHANGED,
            f"standby image changed to {new.image} outside the controller",
            policy,
        )
    agent = _agents(pod).get(record.new_slot)
    fresh = runs_fresh(new, record.to_image, record.standby_seen)
    if (
        fresh
        and agent is not None
        and agent.reachable
        and agent.role == "active"
        and agent.phase == "serving"
    ):
        message = (
            f"slot {record.new_slot} took over (epoch {agent.epoch}); waiting for the old Envoy to drain"
        )
        draining = record.moved(Phase.DRAINING, now=pod.now, message=message, taken_over=True)
        event = _event("TakenOver", f"{new.name} ({record.to_image}) serves, epoch {agent.epoch}")
        return WaitFor(reason=message, requeue_after=policy.poll_interval, record=draining, event=event)
    if agent is not None and agent.reachable and agent.phase == "failed":
        why = f"agent of slot {record.new_slot} failed: {agent.last_error or 'no error given'}"
        if status_lags(new, record.standby_seen) and _elapsed(record, pod.now) <= policy.step_timeout:
            reason = (
                f"agent of slot {record.new_slot} failed; waiting for the kubelet to report its container"
            )
            return WaitFor(reason=reason, requeue_after=min(policy.poll_interval, 0.5))
        held = rollback_hold(pod, record, new, policy)
        if held is not None:
            before = f"rolling it back to the empty image ({Reason.AGENT_FAILED}: {why})"
            return _wait_out(pod, record, held, before=before)
        return _roll_back(pod, record, Reason.AGENT_FAILED, why, policy)
    if new.waiting_reason == "CrashLoopBackOff" and _never_started(new, record.standby_seen):
        return _held_by_kubelet(pod, record, new, policy)
    if new.waiting_reason in FATAL_WAITING:
        reason = Reason.IMAGE_PULL_FAILED if new.waiting_reason in PULL_FAILURES else Reason.CONTAINER_FAILED
        why = f"{new.name}: {new.waiting_reason}: {new.waiting_message or ''}".rstrip(": ")
        return _roll_back(pod, record, reason, why, policy)
    if _exited_since_change(new, record.standby_seen) and not _new_agent_owns_traffic(pod, record):
        # The kubelet shows no CrashLoopBackOff for an init container that exited 0 (a native sidecar
        # whose agent stopped on the SIGTERM after its failed postStart, kubelet v1.34
        # convertToAPIContainerStatuses); waiting for its next restart costs the back-off (10 s+).
        why = (
            f"{new.name} exited ({new.terminated_reason}, exit code {new.terminated_exit_code}) "
            "after the image change"
        )
        return _roll_back(pod, record, Reason.CONTAINER_FAILED, why, policy)
    baseline = record.standby_restarts_before
    if baseline is not None and new.restart_count > baseline + 1 and not _new_agent_owns_traffic(pod, record):
        why = f"{new.name} restarted {new.restart_count - baseline - 1} time(s) after the image change"
        return _roll_back(pod, record, Reason.CONTAINER_FAILED, why, policy)
    elapsed = _elapsed(record, pod.now)
    seen = record.standby_seen
    # An agent answering on the new slot's port runs in a target container (the standby ran the empty
    # image), so the kubelet acted however old the status is: it publishes a pod's status when a sync
    # starts, and the sync that started the target blocks in its postStart hook until the take-over ends.
    # Its Events say so too, before the agent answers (a busy node: container start, Python, imports).
    answers = agent is not None and agent.reachable
    ignored = ignored_image_change(new, seen, waited=elapsed, grace=policy.kubelet_grace) and not answers
    acting = None
    if ignored and not _new_agent_owns_traffic(pod, record):
        acting = replacing_since(_kubelet_events(pod), new.name, record.phase_since)
        if acting is None:
            why = _kubelet_ignored(pod, new, seen, record.to_image, policy)
            return _roll_back(pod, record, Reason.KUBELET_IGNORED_IMAGE_CHANGE, why, policy)
    if elapsed > policy.step_timeout:
        if not _new_agent_owns_traffic(pod, record):
            why = f"slot {record.new_slot} did not take over within {policy.step_timeout:.0f}s"
            return _roll_back(pod, record, Reason.TAKE_OVER_TIMEOUT, why, policy)
        if elapsed > 2 * policy.step_timeout:
            why = (
                f"slot {record.new_slot} is {agent.phase if agent else 'unknown'} after {elapsed:.0f}s; "
                "not rolled back because its Envoy may hold the listeners"
            )
            return _fail(pod, record, Reason.TAKE_OVER_STUCK, why)
    lag = f" (the kubelet is replacing {new.name}: {_said(acting)})" if acting is not None else ""
    return WaitFor(
        reason=f"waiting for slot {record.new_slot} to take over{lag}", requeue_after=policy.poll_interval
    )


def _said(event: KubeletEvent) -> str:
    return f"{event.reason} at {format_time(event.last_seen)}"


def _never_started(container: ContainerView, seen: Seen) -> bool:
    """No instance of the new image has run: the newest exited one is the container the change replaced
    (kubelet_pods.go convertToAPIContainerStatuses shows it as lastState while the start waits)."""
    same_last = seen.container_id is not None and container.last_container_id == seen.container_id
    return same_last and (seen.restart_count is None or container.restart_count <= seen.restart_count)


def _held_by_kubelet(pod: ObservedPod, record: UpgradeRecord, new: ContainerView, policy: Policy) -> Action:
    """CrashLoopBackOff before the target ever ran is the kubelet's back-off for this container and image
    (one the model could not foresee: a restarted controller, a crash it never saw), not a failed target:
    wait for it, up to the step timeout."""
    if _elapsed(record, pod.now) > policy.step_timeout and not _new_agent_owns_traffic(pod, record):
        why = (
            f"{new.name} still held in the kubelet's crash-loop back-off after {policy.step_timeout:.0f}s, "
            f"{record.to_image} never started: {new.waiting_message or 'no message'}"
        )
        return _roll_back(pod, record, Reason.TAKE_OVER_TIMEOUT, why, policy)
    reason = f"{new.name} waits in the kubelet's crash-loop back-off; {record.to_image} has not run in it yet"
    message = (
        f"standby {new.name} set to {record.to_image}; the kubelet holds its start in its crash-loop "
        f"back-off (keyed by container and image; {record.to_image} has not run in it since the change): "
        "waiting for it, not rolling back"
    )
    said = f"{reason}: {new.waiting_message or 'CrashLoopBackOff'}"
    return _wait_saying_once(record, reason, message, said, requeue_after=policy.poll_interval)


def _kubelet_ignored(
    pod: ObservedPod, container: ContainerView, seen: Seen, image: str, policy: Policy
) -> str:
    """Why the controller gave up on an image change the kubelet never acted on, naming the kubelet."""
    why = (
        f"the kubelet did not restart {container.name} within {policy.kubelet_grace:.0f}s of setting its "
        f"image to {image}: container {seen.container_id} runs on (restarts {container.restart_count}, "
        f"image {container.status_image}), no pull, no Waiting state"
    )
    if not container.native_sidecar:
        return why
    node = _node(pod)
    version = node.kubelet_version if node is not None else None
    if node is not None and version is not None:
        return f"{why}; {unsupported_native_sidecar(version, node.name)}"
    return f"{why}; only kubelets v1.32+ restart a native sidecar on an image change (kubernetes#126525)"


def _old_slot_phase(pod: ObservedPod, record: UpgradeRecord) -> str | None:
    for slot in (record.new_slot, record.old_slot):  # the new agent's copy of the shared state first
        agent: AgentView | None = _agents(pod).get(slot)
        if agent is not None and agent.reachable and record.old_slot in agent.slot_phases:
            return agent.slot_phases[record.old_slot]
    return None


def _draining(pod: ObservedPod, status: InjectionStatus, record: UpgradeRecord, policy: Policy) -> Action:
    """Step 5: never touch the old container before its Envoy has exited."""
    old = pod.containers.get(record.old_container)
    phase = _old_slot_phase(pod, record)
    if old is not None and old.image == record.empty_image and old.running:  # resumed after a reset
        return _complete(pod, status, record)
    if phase == "retired" and old is not None:
        held = _kubelet_hold(pod, old, record.empty_image)
        if held is not None and held.seconds <= policy.step_timeout:  # longer: reset now, NotReady a while
            return _wait_out(pod, record, held, before="setting it to the empty image")
        message = f"old Envoy in slot {record.old_slot} exited; {old.name} set to the empty image"
        resetting = record.moved(
            Phase.RESETTING,
            now=pod.now,
            message=message,
            old_container_id=old.container_id,
            old_restarts_before=old.restart_count,
            old_image_id_before=old.image_id,
        )
        drained = _event("Drained", f"old Envoy in {old.name} drained and exited")
        planned = plan_restart(pod.annotations, old.name)
        return _to_empty(ResetOldToEmpty, pod, old, resetting, policy, event=drained, planned=planned)
    deadline = drain_deadline_seconds(old, policy)
    if _elapsed(record, pod.now) > deadline:
        why = (
            f"old Envoy in slot {record.old_slot} still {phase or 'unknown'} after {deadline:.0f}s; "
            f"new Envoy serves from {record.new_container}, old container left as is "
            f"(set {ANNOTATION_RETRY} to resume)"
        )
        return _fail(pod, record, Reason.DRAIN_TIMEOUT, why, status=status_after_take_over(status, record))
    return WaitFor(
        reason=f"old slot {record.old_slot} is {phase or 'unknown'}", requeue_after=policy.poll_interval
    )


def _resetting(pod: ObservedPod, status: InjectionStatus, record: UpgradeRecord, policy: Policy) -> Action:
    """Step 6: the old container runs the empty image again; swap the status annotation."""
    old = pod.containers.get(record.old_container)
    if old is None:
        why = f"old container {record.old_container} disappeared"
        return _fail(pod, record, Reason.RESET_TIMEOUT, why, status=status_after_take_over(status, record))
    if old.image != record.empty_image:  # reapply: a stale write elsewhere undid ours
        return _to_empty(ResetOldToEmpty, pod, old, record, policy)
    if runs_fresh(old, record.empty_image, record.old_seen):
        return _complete(pod, status, record)
    elapsed = _elapsed(record, pod.now)
    ignored = ignored_image_change(old, record.old_seen, waited=elapsed, grace=policy.kubelet_grace)
    if ignored and replacing_since(_kubelet_events(pod), old.name, record.phase_since) is None:
        why = _kubelet_ignored(pod, old, record.old_seen, record.empty_image, policy)
        why += f"; new Envoy serves from {record.new_container}"
        serving = status_after_take_over(status, record)
        return _fail(pod, record, Reason.KUBELET_IGNORED_IMAGE_CHANGE, why, status=serving)
    if elapsed > policy.step_timeout:
        why = (
            f"{old.name} did not run the empty image within {policy.step_timeout:.0f}s "
            f"({old.waiting_reason or 'not running'}); new Envoy serves from {record.new_container}"
        )
        return _fail(pod, record, Reason.RESET_TIMEOUT, why, status=status_after_take_over(status, record))
    backoff = f" (the kubelet's crash-loop back-off: {old.waiting_message})" if _backing_off(old) else ""
    return WaitFor(
        reason=f"waiting for {old.name} to run the empty image{backoff}", requeue_after=policy.poll_interval
    )


def _backing_off(container: ContainerView) -> bool:
    return container.waiting_reason == "CrashLoopBackOff"


def _complete(pod: ObservedPod, status: InjectionStatus, record: UpgradeRecord) -> Complete:
    message = f"sidecar {record.from_image} -> {record.to_image}; active container {record.new_container}"
    done = record.moved(Phase.COMPLETED, now=pod.now, message=message)
    event = _event("UpgradeCompleted", message)
    return Complete(record=done, status=status_after_take_over(status, record), event=event)


def _rolling_back(pod: ObservedPod, record: UpgradeRecord, policy: Policy) -> Action:
    """After a failure: done when the standby runs a fresh container on the empty image."""
    new = pod.containers.get(record.new_container)
    reason = record.reason or Reason.TAKE_OVER_TIMEOUT
    original = record.message.removeprefix("rolling back: ")
    if new is None:
        return _fail(pod, record, reason, f"{original}; standby container disappeared during rollback")
    if new.image != record.empty_image:
        return _to_empty(RollBack, pod, new, record, policy)
    # Done when a fresh container runs the empty image, or when the kubelet never swapped it at all:
    # the very container from before the upgrade still runs (on the empty image it never left).
    before = record.standby_seen
    # An agent of the new slot that answered (AgentFailed) ran in a container after the change: one
    # "from before the change" is then a status the kubelet has not published yet (it publishes after
    # the postStart hook), never a change it ignored; a fence cannot make that status true.
    answered = reason is Reason.AGENT_FAILED
    never_left = before.container_id is not None and still_the_container(new, before) and not answered
    if never_left and not _fenced(pod, record) and _elapsed(record, pod.now) <= policy.kubelet_grace:
        # Unfenced (an agent before 1.4), "never restarted" may be a status the API server publishes
        # late while a new agent takes over: look for `kubelet_grace` before believing it.
        return WaitFor(
            reason=f"{new.name} shows its container from before the change; making sure for "
            f"{policy.kubelet_grace:.0f}s (no fence)",
            requeue_after=policy.poll_interval,
        )
    if runs_fresh(new, record.empty_image, record.rollback_seen) or never_left:
        still = _new_agent_still_runs(pod, record)
        if still is not None and _elapsed(record, pod.now) <= policy.step_timeout:
            # The pod's status lags the kubelet: the rolled-back container still runs.
            return WaitFor(reason=still, requeue_after=policy.poll_interval)
        serving = _old_envoy_serves(pod, record)
        if serving is False:
            return _repair_forward(pod, record, new, original, policy)
        if serving is None:
            if _elapsed(record, pod.now) <= policy.step_timeout:
                return WaitFor(
                    reason=f"{new.name} back on the empty image; waiting to see the old Envoy serve",
                    requeue_after=policy.poll_interval,
                )
            why = (
                f"{original}; rolled back, but the agent of slot {record.old_slot} did not answer: "
                "whether its Envoy serves is unknown"
            )
            return _fail(pod, record, reason, why)
        failed = record.moved(Phase.FAILED, now=pod.now, message=f"{original}; rolled back", reason=reason)
        event = _event(
            "RolledBack", f"{new.name} back on the empty image; old Envoy kept serving: {original}"
        )
        return Fail(record=failed, event=event)
    if _elapsed(record, pod.now) > policy.step_timeout:
        waited = f"{policy.step_timeout:.0f}s"
        why = f"{original}; rollback incomplete: {new.name} not on the empty image after {waited}"
        return _fail(pod, record, reason, why)
    return WaitFor(
        reason=f"waiting for {new.name} to run the empty image", requeue_after=policy.poll_interval
    )


def _new_agent_still_runs(pod: ObservedPod, record: UpgradeRecord) -> str | None:
    """Why the rollback is not done although the pod's status says so: the new slot's agent (whose image
    has no agent once reset) still answers and has not failed or stood by; else None."""
    agent = _agents(pod).get(record.new_slot)
    if agent is None or not agent.reachable or agent.phase in ("failed", "retired"):
        return None
    return f"the agent of slot {record.new_slot} still answers ({agent.role}/{agent.phase}): not reset yet"


def _old_envoy_serves(pod: ObservedPod, record: UpgradeRecord) -> bool | None:
    """Whether the old slot's agent, asked after the standby was seen reset, reports its Envoy active
    and serving; None when it did not answer."""
    old = _agents(pod).get(record.old_slot)
    if old is None or not old.reachable:
        return None
    active = old.active_slot in (None, record.old_slot)
    return old.role == "active" and old.phase == "serving" and active


def _repair_forward(
    pod: ObservedPod, record: UpgradeRecord, new: ContainerView, original: str, policy: Policy
) -> Action:
    """After a rollback no Envoy serves (the old agent says so): set the standby to the target again so
    its agent starts one (fresh, or taking over whatever serves), never report "kept serving"."""
    old = _agents(pod)[record.old_slot]
    if old.phase == "draining" and _elapsed(record, pod.now) <= policy.step_timeout:
        # Its Envoy was told to drain by the one the rollback stopped, and exits within its
        # parent-shutdown time (or is killed by its agent): start afresh after, not take over from it.
        return WaitFor(
            reason=f"no Envoy serves after the rollback; slot {record.old_slot}'s Envoy is still draining",
            requeue_after=policy.poll_interval,
        )
    lift = _lift_fence(pod, record, policy)
    if lift is not None:
        return lift
    held = _kubelet_hold(pod, new, record.to_image)
    if held is not None and held.seconds <= policy.step_timeout:  # longer: go now, the pod has no Envoy
        # Not written into the record: its message still carries the failure the rollback was for.
        why = f"no Envoy serves after the rollback; the kubelet's crash-loop back-off on {held.container}"
        return WaitFor(reason=why, requeue_after=held.seconds, hold=held)
    seen = f"{old.role}/{old.phase}, active slot {old.active_slot}"
    message = (
        f"no Envoy serves after the rollback ({original}): the agent of slot {record.old_slot} is {seen}; "
        f"repairing forward: standby {new.name} set to {record.to_image} again"
    )
    event = _event("NoEnvoyAfterRollBack", message, warning=True)
    return _take_over_patch(pod, record, new, event, message=message, reason=Reason.NO_ENVOY_AFTER_ROLLBACK)


def _resume_drain(pod: ObservedPod, record: UpgradeRecord, retry: str | None) -> Action:
    """An explicit retry after a post-take-over failure resumes at draining, never restarts the swap."""
    message = "retry: resuming at draining (the new Envoy already serves)"
    resumed = record.moved(Phase.DRAINING, now=pod.now, message=message, reason=None, retry_token=retry)
    resumed = replace(resumed, attempt=record.attempt + 1, finished=None)
    return WaitFor(reason=message, requeue_after=0.1, record=resumed)
