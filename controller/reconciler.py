"""One reconcile: re-read the pod, decide with `next_step`, carry out the action, return a `Result`.

The only place errors become retries, by the map in controller.errors: a conflict (409, or a failed
`test` op) or a transient API error reruns the whole read-decide-act with tenacity (never a blind
re-send of a stale patch); anything left over, and any bug, becomes a requeue-after. Resuming after a
controller restart needs nothing special. Every reconcile first posts the Event the pod's record still
owes (controller.events), and so does every write, right after it lands. An upgrade starts only if the
PodDisruptionBudget gate admits it (controller.budgetgate over controller.budgetcache): the namespace's
admission lock is held from the verdict until the write it allowed has landed and is counted.
"""

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

import tenacity

from controller import events
from controller.actions import (
    Action,
    Complete,
    CreatePrePullPod,
    Fail,
    FenceTakeOver,
    Noop,
    Observe,
    SetImage,
    WaitFor,
    Withdraw,
)
from controller.agents import FenceAnswer
from controller.budgetgate import ADMITTED
from controller.errors import (
    ERROR_REQUEUE,
    ErrorKind,
    KubeError,
    TransientError,
    already_exists,
    api_message,
    refused,
    retry_for,
)
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.observed import (
    AgentView,
    BudgetView,
    KubeletEvent,
    NodeView,
    ObservedPod,
    kubelet_events_view,
    node_view,
    observe_pod,
    pre_pull_view,
)
from controller.patches import patch_for, withdraw_patch
from controller.policy import Policy
from controller.prepull import pre_pull_pod_manifest
from controller.result import DONE, Result, requeue
from controller.steps import next_step, pre_pull_refused
from releaseapi.apitime import format_time
from webhook import logs

RETRY_ATTEMPTS = 6
SLOTS = ("a", "b")


class AgentSource(Protocol):
    def fetch_all(self, pod_ip: str | None, slots: tuple[str, ...] = ...) -> Mapping[str, AgentView]: ...

    def fence(
        self, pod_ip: str | None, agent_slot: str, *, slot: str, token: str, lift: bool
    ) -> FenceAnswer: ...


class BudgetGate(Protocol):
    """The PodDisruptionBudget gate (controller.budgetcache.BudgetCache is one)."""

    def holding(self, namespace: str) -> AbstractContextManager[None]: ...

    def admit(self, raw_pod: dict[str, Any]) -> BudgetView: ...

    def seen(self, raw_pod: dict[str, Any]) -> None: ...


def in_place_retries(*, before_sleep: Callable[[tenacity.RetryCallState], None]) -> tenacity.Retrying:
    """Rerun a whole read-decide-act on the errors `retry_for` calls temporary (conflicts, transient),
    with backoff; after RETRY_ATTEMPTS the last error is raised for the caller to requeue."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: retry_for(exc).in_place),
        stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=3.0, jitter=0.1),
        before_sleep=before_sleep,
        reraise=True,
    )


def count_retry(metrics: ControllerMetrics, state: tenacity.RetryCallState, **context: Any) -> None:
    """Count and log one in-place retry (the `kind` label says which error map entry fired)."""
    exc = state.outcome.exception() if state.outcome else None
    kind = retry_for(exc).kind if exc is not None else ErrorKind.TRANSIENT
    metrics.api_retries.labels(kind=str(kind)).inc()
    logs.event(
        "reconcile_retry", kind=str(kind), attempt=state.attempt_number, error=str(exc)[:200], **context
    )


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
        budgets: BudgetGate | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`budgets` None: no PodDisruptionBudget is consulted (`--no-disruption-budgets`)."""
        self.kube = kube
        self.agents = agents
        self.policy = policy
        self.metrics = metrics
        self.budgets = budgets
        self.clock = clock

    def reconcile(self, namespace: str, name: str) -> Result:
        """Never raises an Exception: every error ends in a requeue-after (controller.errors)."""
        retrying = in_place_retries(before_sleep=self._count_retry)
        try:
            result: Result = retrying(self._once, namespace, name)
        except Exception as exc:
            return self._failed(f"{namespace}/{name}", exc)
        return result

    def _failed(self, key: str, exc: Exception) -> Result:
        """Log and count what the in-place retries did not fix; the error map says when to look again."""
        if isinstance(exc, KubeError):
            self.metrics.reconciles.labels(result="error").inc()
            logs.event(
                "reconcile_failed", level=logging.WARNING, pod=key, status=exc.status, error=exc.message[:300]
            )
        else:  # a bug: the worker lives on and the key is tried again later
            logs.event("reconcile_crashed", pod=key, exc_info=True)
        return requeue(retry_for(exc).requeue_after)

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        count_retry(self.metrics, state)

    def decide(self, pod: dict[str, Any], held: ExitStack) -> tuple[ObservedPod, Action]:
        """Observe the pod alone, and the agents, the pre-pull pod, the node or the budget gate only when
        `next_step` asks; a gate's lock is entered on `held`, for the caller to release after acting."""
        observed = observe_pod(pod, now=self.clock())
        decision = next_step(observed, self.policy)
        while isinstance(decision, Observe):
            observed = self._observe_more(observed, decision, pod, held)
            decision = next_step(observed, self.policy)
        return observed, decision

    def _observe_more(
        self, observed: ObservedPod, wanted: Observe, pod: dict[str, Any], held: ExitStack
    ) -> ObservedPod:
        new_agents = wanted.agents and observed.agents is None
        new_pre_pull = bool(wanted.pre_pull_pod) and observed.pre_pull is None
        new_node = wanted.node and observed.node is None and bool(observed.node_name)
        new_budget = wanted.budget and observed.budget is None
        new_events = wanted.kubelet_events and observed.kubelet_events is None
        if not (new_agents or new_pre_pull or new_node or new_budget or new_events):
            raise RuntimeError(f"next_step asked for nothing new: {wanted}")  # a bug; never loop on it
        more = observed
        if new_agents:
            more = replace(more, agents=dict(self.agents.fetch_all(observed.pod_ip, SLOTS)))
        if new_pre_pull and wanted.pre_pull_pod:
            pull = self.kube.get_pod(observed.namespace, wanted.pre_pull_pod)
            more = replace(more, pre_pull=pre_pull_view(pull))
        if new_node and observed.node_name:
            more = replace(more, node=self._node(observed.node_name))
        if new_budget:
            more = replace(more, budget=self._budget(observed, pod, held))
        if new_events:
            more = replace(more, kubelet_events=self._kubelet_events(observed))
        return more

    def _kubelet_events(self, observed: ObservedPod) -> tuple[KubeletEvent, ...]:
        """The kubelet's Events on the pod; none when they may not be read (no RBAC `list`: a change
        then looks ignored after `kubelet_grace`, as before the controller read them)."""
        try:
            return kubelet_events_view(self.kube.list_events(observed.namespace, observed.name))
        except TransientError:
            raise
        except KubeError as exc:
            logs.event(
                "events_unreadable", level=logging.WARNING, pod=observed.key, error=api_message(exc)[:300]
            )
            return ()

    def _budget(self, observed: ObservedPod, pod: dict[str, Any], held: ExitStack) -> BudgetView:
        """The gate's verdict, taken under the namespace's lock (kept until the caller has acted)."""
        if self.budgets is None:
            return ADMITTED
        held.enter_context(self.budgets.holding(observed.namespace))
        verdict = self.budgets.admit(pod)
        if not verdict.admitted:
            logs.event("upgrade_held", level=logging.DEBUG, pod=observed.key, reason=verdict.message)
        return verdict

    def _node(self, name: str) -> NodeView:
        """The pod's node; one the controller may not read (no RBAC) has an unknown kubelet version."""
        try:
            return node_view(name, self.kube.get_node(name))
        except TransientError:
            raise
        except KubeError as exc:
            logs.event("node_unreadable", level=logging.WARNING, node=name, error=api_message(exc)[:300])
            return node_view(name, None, error=api_message(exc))

    def _once(self, namespace: str, name: str) -> Result:
        pod = self.kube.get_pod(namespace, name)
        if pod is None:
            return DONE
        pod = self._post_owed_event(pod)
        with ExitStack() as held:
            observed, action = self.decide(pod, held)
            return self._act(observed, action)

    def _act(self, observed: ObservedPod, action: Action) -> Result:
        context: dict[str, Any] = {"pod": observed.key, "action": _kind(action)}
        if isinstance(action, Noop):
            self.metrics.reconciles.labels(result="noop").inc()
            logs.event("reconcile_noop", level=logging.DEBUG, reason=action.reason, **context)
            return DONE
        if isinstance(action, CreatePrePullPod):
            return self._pre_pull(observed, action)
        if isinstance(action, FenceTakeOver):
            return self._fence(observed, action)
        if isinstance(action, Withdraw):
            return self._withdraw(observed, action)
        ops = patch_for(action, observed.resource_version)
        owes = False
        if ops:
            written = self._post_owed_event(self.kube.patch_pod(observed.namespace, observed.name, ops))
            owes = events.owed_by(written) is not None
        if isinstance(action, SetImage) and action.planned is not None and action.planned.delta > 0:
            planned = action.planned
            labels = {"namespace": observed.namespace, "container": planned.container}
            self.metrics.planned_restarts.labels(**labels).inc(planned.delta)
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
            if action.hold is not None:  # one line per look: how long the kubelet's back-off has left
                held = action.hold
                logs.event(
                    "kubelet_backoff_wait",
                    pod=observed.key,
                    container=held.container,
                    image=held.image,
                    seconds=round(held.seconds, 1),
                    until=format_time(held.until),
                    backoff=held.backoff,
                )
            return requeue(action.requeue_after)
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
            return requeue(ERROR_REQUEUE) if owes else DONE  # terminal: look again only for an owed Event
        return requeue(action.requeue_after)

    def _withdraw(self, observed: ObservedPod, action: Withdraw) -> Result:
        """Drop the withdrawn upgrade's record and hold (pinned to the pod as seen), then its pre-pull pod."""
        self.kube.patch_pod(
            observed.namespace, observed.name, withdraw_patch(action, observed.resource_version)
        )
        self.metrics.reconciles.labels(result="write").inc()
        self.metrics.actions.labels(action=_kind(action)).inc()
        logs.event("upgrade_withdrawn", pod=observed.key, to=action.image, reason=action.reason)
        self._say_withdrawn(observed, action)
        if action.delete_pre_pull:
            self._delete_quietly(observed.namespace, action.delete_pre_pull)
        return requeue(action.requeue_after)

    def _say_withdrawn(self, observed: ObservedPod, action: Withdraw) -> None:
        """Best effort: the record that would owe this Event is gone, so a failed post is only logged."""
        pod = {
            "namespace": observed.namespace,
            "name": observed.name,
            "uid": observed.uid,
            "resourceVersion": observed.resource_version,
        }
        body = events.withdrawal_manifest(
            pod, image=action.image, message=action.reason, now=self.clock(), component=self.kube.component
        )
        try:
            self.kube.create_event(observed.namespace, body)
        except KubeError as exc:
            if not already_exists(exc):
                reason, error = events.WITHDRAWN, api_message(exc)[:300]
                logs.event(
                    "event_failed", level=logging.WARNING, pod=observed.key, reason=reason, error=error
                )

    def _fence(self, observed: ObservedPod, action: FenceTakeOver) -> Result:
        """Ask the agent; whatever it answers, look again: the verdict is read back from /status."""
        answer = self.agents.fence(
            observed.pod_ip, action.agent_slot, slot=action.slot, token=action.token, lift=action.lift
        )
        self.metrics.reconciles.labels(result="wait").inc()
        self.metrics.actions.labels(action=_kind(action)).inc()
        logs.event(
            "fence_lifted" if action.lift else "fence_asked",
            level=logging.INFO if answer.code == 200 else logging.WARNING,
            pod=observed.key,
            agent=action.agent_slot,
            slot=action.slot,
            token=action.token,
            code=answer.code,
            answer=answer.detail[:300],
            why=action.reason,
        )
        return requeue(action.requeue_after)

    def _pre_pull(self, observed: ObservedPod, action: CreatePrePullPod) -> Result:
        if action.record is not None:
            ops = patch_for(action, observed.resource_version)
            self._post_owed_event(self.kube.patch_pod(observed.namespace, observed.name, ops))
            logs.event("upgrade_step", pod=observed.key, action="CreatePrePullPod", node=action.node_name)
        owner = {"name": observed.name, "uid": observed.uid}
        manifest = pre_pull_pod_manifest(action, namespace=observed.namespace, owner=owner)
        try:
            self.kube.create_pod(observed.namespace, manifest)
        except KubeError as exc:
            if refused(exc):
                return self._pre_pull_refused(observed, action.pod_name, api_message(exc))
            if not already_exists(exc):
                raise
        self.metrics.reconciles.labels(result="write").inc()
        return requeue(action.requeue_after)

    def _pre_pull_refused(self, observed: ObservedPod, pre_pull_pod: str, why: str) -> Result:
        """Admission, quota or RBAC refused the pre-pull pod: record why at once, not a timeout later."""
        fields: dict[str, Any] = {"pod": observed.key, "pre_pull": pre_pull_pod, "error": why}
        logs.event("pre_pull_refused", level=logging.WARNING, **fields)
        pod = self.kube.get_pod(observed.namespace, observed.name)  # as the record write above left it
        if pod is None:
            return DONE
        fresh = observe_pod(pod, now=self.clock())
        return self._act(fresh, pre_pull_refused(fresh, why))

    def _post_owed_event(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Post what the pod's record owes (controller.events); returns the pod as it now is."""
        posting = events.post_owed(self.kube, pod, now=self.clock())
        if self.budgets is not None:
            self.budgets.seen(posting.pod)  # a start is counted before the admission lock is let go
        owed, name = posting.owed, (pod.get("metadata") or {}).get("name")
        if owed is not None and posting.outcome == "already posted":
            logs.event("event_already_posted", pod=name, reason=owed.event.reason, name=owed.name)
        elif owed is not None and posting.outcome == "failed":
            reason, error = owed.event.reason, str(posting.error)
            logs.event("event_failed", level=logging.WARNING, pod=name, reason=reason, error=error)
        return posting.pod

    def _delete_quietly(self, namespace: str, name: str) -> None:
        try:
            self.kube.delete_pod(namespace, name)
        except KubeError as exc:
            logs.event(
                "pre_pull_cleanup_failed", level=logging.WARNING, pod=f"{namespace}/{name}", error=str(exc)
            )
