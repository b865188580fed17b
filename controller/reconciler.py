"""One reconcile: re-read the pod, ask the agents, decide with `next_step`, carry out the action.

The only place errors become retries: a conflict (409, or a failed `test` op) or a transient API error
reruns the whole read-decide-act with tenacity (never a blind re-send of a stale patch); anything
left over becomes a requeue-after. Resuming after a controller restart needs nothing special.
Events too: each write records the Event it owes; the Event is posted (under a name fixed per attempt
and step, so a re-post is 409 AlreadyExists) and marked posted afterwards, and every reconcile first
posts whatever the record still owes. A crash between write and post delays the Event, never loses it.
"""

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import tenacity

from controller.actions import (
    Action,
    Complete,
    CreatePrePullPod,
    Event,
    Fail,
    Noop,
    SetImage,
    WaitFor,
)
from controller.kube import ConflictError, Kube, KubeError, NotFoundError, TransientError
from controller.metrics import ControllerMetrics
from controller.observed import AgentView, ObservedPod, PrePullView, containers_of, observe_pod
from controller.patches import event_posted_patch, patch_for, pre_pull_pod_manifest
from controller.policy import Policy
from controller.record import Phase, event_name
from controller.steps import current_record, needs_agents, next_step, record_in
from webhook import logs

RETRY_ATTEMPTS = 6
ERROR_REQUEUE = 10.0


class AgentSource(Protocol):
    def fetch_all(self, pod_ip: str | None, slots: tuple[str, ...] = ...) -> Mapping[str, AgentView]: ...


def pre_pull_view(pod: Mapping[str, Any] | None) -> PrePullView:
    """What the step function needs to know about the pre-pull pod."""
    if pod is None:
        return PrePullView(exists=False)
    status = pod.get("status") or {}
    pull = containers_of(pod).get("pull")
    return PrePullView(
        exists=True,
        phase=status.get("phase"),
        waiting_reason=pull.waiting_reason if pull else None,
        message=(pull.waiting_message if pull else None) or status.get("message"),
    )


def _owes_event(pod: Mapping[str, Any]) -> bool:
    record = record_in((pod.get("metadata") or {}).get("annotations") or {})
    return record is not None and record.event_due is not None


def _kind(action: Action) -> str:
    return type(action).__name__


class Reconciler:
    """Reconciles one pod per call; stateless between calls."""

    def __init__(
        self,
        kube: Kube,
        agents: AgentSource,
        policy: Policy,
        *,
        metrics: ControllerMetrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.agents = agents
        self.policy = policy
        self.metrics = metrics
        self.clock = clock

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Returns seconds until this pod wants another look, or None to wait for its next change."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((ConflictError, TransientError)),
            stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
            wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=3.0, jitter=0.1),
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            result: float | None = retrying(self._once, namespace, name)
        except KubeError as exc:
            self.metrics.reconciles.labels(result="error").inc()
            logs.event(
                "reconcile_failed",
                level=logging.WARNING,
                pod=f"{namespace}/{name}",
                status=exc.status,
                error=exc.message[:300],
            )
            return ERROR_REQUEUE
        return result

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        kind = "conflict" if isinstance(exc, ConflictError) else "transient"
        self.metrics.api_retries.labels(kind=kind).inc()
        logs.event("reconcile_retry", kind=kind, attempt=state.attempt_number, error=str(exc)[:200])

    def observe(self, pod: Mapping[str, Any]) -> ObservedPod:
        """The snapshot `next_step` decides on: pod, and the agents and pre-pull pod when it needs them."""
        now = self.clock()
        bare = observe_pod(pod, now=now)
        agents = self.agents.fetch_all(bare.pod_ip, ("a", "b")) if needs_agents(bare, self.policy) else {}
        pre_pull = None
        record = current_record(bare)
        if record is not None and record.phase is Phase.PRE_PULLING and record.pre_pull_pod:
            pre_pull = pre_pull_view(self.kube.get_pod(bare.namespace, record.pre_pull_pod))
        return observe_pod(pod, now=now, agents=agents, pre_pull=pre_pull)

    def _once(self, namespace: str, name: str) -> float | None:
        pod = self.kube.get_pod(namespace, name)
        if pod is None:
            return None
        pod = self._post_owed_event(pod)
        observed = self.observe(pod)
        action = next_step(observed, self.policy)
        return self._act(observed, action)

    def _act(self, observed: ObservedPod, action: Action) -> float | None:
        context: dict[str, Any] = {"pod": observed.key, "action": _kind(action)}
        if isinstance(action, Noop):
            self.metrics.reconciles.labels(result="noop").inc()
            logs.event("reconcile_noop", level=logging.DEBUG, reason=action.reason, **context)
            return None
        if isinstance(action, CreatePrePullPod):
            return self._pre_pull(observed, action)
        ops = patch_for(action, observed.resource_version)
        owes = False
        if ops:
            written = self._post_owed_event(self.kube.patch_pod(observed.namespace, observed.name, ops))
            owes = _owes_event(written)
        record = action.record
        fields: dict[str, Any] = {**context}
        if record is not None:
            fields.update(
                phase=str(record.phase), to=record.to_image, attempt=record.attempt, message=record.message
            )
        if isinstance(action, WaitFor):
            self.metrics.reconciles.labels(result="write" if ops else "wait").inc()
            if ops:
                logs.event("upgrade_progress", **fields)
            return action.requeue_after
        self.metrics.reconciles.labels(result="write").inc()
        self.metrics.actions.labels(action=_kind(action)).inc()
        logs.event("upgrade_step", **fields)
        if isinstance(action, SetImage | Fail) and action.delete_pre_pull:
            self._delete_quietly(observed.namespace, action.delete_pre_pull)
        if isinstance(action, Complete):
            self.metrics.upgrades.labels(result="completed", reason="").inc()
            self.metrics.upgrade_seconds.observe(
                (action.record.phase_since - action.record.started).total_seconds()
            )
        if isinstance(action, Fail):
            reason = str(action.record.reason or "")
            self.metrics.upgrades.labels(result="failed", reason=reason).inc()
        if isinstance(action, Complete | Fail):
            return ERROR_REQUEUE if owes else None  # terminal: look again only for an Event still owed
        return action.requeue_after

    def _pre_pull(self, observed: ObservedPod, action: CreatePrePullPod) -> float:
        if action.record is not None:
            ops = patch_for(action, observed.resource_version)
            self._post_owed_event(self.kube.patch_pod(observed.namespace, observed.name, ops))
            logs.event("upgrade_step", pod=observed.key, action="CreatePrePullPod", node=action.node_name)
        owner = {"name": observed.name, "uid": observed.uid}
        manifest = pre_pull_pod_manifest(action, namespace=observed.namespace, owner=owner)
        try:
            self.kube.create_pod(observed.namespace, manifest)
        except ConflictError as exc:
            if "AlreadyExists" not in exc.message:
                raise
        self.metrics.reconciles.labels(result="write").inc()
        return action.requeue_after

    def _post_owed_event(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Post the Event the pod's record owes and mark it posted; returns the pod as it now is.

        A failed post is logged and left owed (retried next reconcile): it must not hold up the upgrade.
        """
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        record = record_in(annotations)
        owed = record.event_due if record is not None else None
        if record is None or owed is None:
            return pod
        name = event_name(record, pod_name=str(meta.get("name")), pod_uid=str(meta.get("uid")))
        event = Event(type=owed.type, reason=owed.reason, message=owed.message)
        try:
            self.kube.record_event(pod, event, now=self.clock(), name=name)
        except ConflictError as exc:
            if "AlreadyExists" not in exc.message:
                return self._event_failed(pod, event, exc)
            logs.event("event_already_posted", pod=meta.get("name"), reason=owed.reason, name=name)
        except KubeError as exc:
            return self._event_failed(pod, event, exc)
        ops = event_posted_patch(record, str(meta.get("resourceVersion")))
        return self.kube.patch_pod(str(meta.get("namespace")), str(meta.get("name")), ops)

    def _event_failed(self, pod: dict[str, Any], event: Event, exc: KubeError) -> dict[str, Any]:
        meta = pod.get("metadata") or {}
        logs.event(
            "event_failed", level=logging.WARNING, pod=meta.get("name"), reason=event.reason, error=str(exc)
        )
        return pod

    def _delete_quietly(self, namespace: str, name: str) -> None:
        try:
            self.kube.delete_pod(namespace, name)
        except (NotFoundError, KubeError) as exc:
            logs.event(
                "pre_pull_cleanup_failed", level=logging.WARNING, pod=f"{namespace}/{name}", error=str(exc)
            )
