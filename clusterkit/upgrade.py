"""Drive a sidecar upgrade the way users do (annotate the pod; the in-cluster controller acts) and read
its outcome from the controller's own record (controller/record.py), parsed by the controller's parser.

Every upgrade driven here is also held to the README's readiness promise ("Readiness during an upgrade"):
the pod's Ready condition, as the API server publishes it, is watched through the upgrade and the run
fails when a NotReady window exceeds NOT_READY_BUDGET_S for the phase the upgrade ended in."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from kubernetes import client, watch

from clusterkit import kube
from controller.keys import ANNOTATION_RETRY, ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE
from controller.record import Phase, UpgradeRecord, parse_record
from webhook import contract
from webhook.injection_status import InjectionStatus, parse_status

TERMINAL = (Phase.COMPLETED, Phase.FAILED)
# The README's promise ("Readiness during an upgrade"), in seconds of NotReady per pod and upgrade, by
# how the upgrade ended. Completed: the pod stays Ready (the kubelet replaces the container and runs its
# postStart in one pod sync; every e2e run so far published no NotReady at all). Failed: the failed
# slot's hook passes while the old Envoy serves on and the rollback replaces it in one pod sync
# (agent/hook.py; measured 0.0 s), an older agent's failed hook costs the kubelet's back-off.
NOT_READY_BUDGET_S: Mapping[Phase, float] = {Phase.COMPLETED: 0.0, Phase.FAILED: 5.0}
# After the outcome: a NotReady published right after the record's last write still counts.
SETTLE_S = 1.0


def status_of(pod: kube.Pod) -> InjectionStatus:
    return parse_status(pod["metadata"]["annotations"][ANNOTATION_STATUS])


def upgrade_record(pod: kube.Pod) -> UpgradeRecord | None:
    """The controller's record of the pod's last upgrade (None before the first one)."""
    raw = (pod["metadata"].get("annotations") or {}).get(ANNOTATION_UPGRADE)
    return parse_record(raw) if raw else None


def agent_status(pod_ip: str, slot: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """GET /status of a slot's agent on the pod IP (None if it does not answer)."""
    port = contract.STATUS_PORT_A if slot == "a" else contract.STATUS_PORT_B
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:{port}/status", timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except (OSError, ValueError):
        return None


def json_patch(api: client.ApiClient, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
    """PATCH with application/json-patch+json (a list body), as the controller does."""
    kube.core(api).patch_namespaced_pod(name, namespace, ops)


def set_image_ops(pod: kube.Pod, container: str, current: str, target: str) -> list[dict[str, Any]]:
    """Replace one container's image, guarded by a `test` op so a stale view fails instead of clobbering."""
    path = f"/spec/containers/{kube.container_index(pod, container)}/image"
    return [{"op": "test", "path": path, "value": current}, {"op": "replace", "path": path, "value": target}]


@dataclass
class Outcome:
    """What an upgrade ended as: the record's phase and message, the pod afterwards, and (from
    `upgrade`) the pod's NotReady seconds and Ready-condition flips the watch saw meanwhile."""

    phase: Phase
    message: str
    pod: kube.Pod
    not_ready_s: float = 0.0
    ready_flips: int = 0
    ready_timeline: tuple[str, ...] = ()


@dataclass
class PodReady:
    """One pod's Ready condition as the watch last saw it (times: time.monotonic())."""

    ready: bool
    since: float
    not_ready_s: float = 0.0
    flips: int = 0
    timeline: list[str] = field(default_factory=list)  # each flip: UTC time, Ready or not, containers

    def seen(self, ready: bool, now: float, *, containers: str = "") -> None:
        if ready != self.ready:
            if ready:
                self.not_ready_s += now - self.since
            self.ready, self.since, self.flips = ready, now, self.flips + 1
            stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
            self.timeline.append(f"{stamp} {'Ready' if ready else 'NotReady'} {containers}".rstrip())

    def closed(self, now: float) -> float:
        """NotReady seconds, counting a window still open at `now`."""
        return self.not_ready_s + (0.0 if self.ready else now - self.since)


@dataclass
class PodStream:
    """A namespace's pods (label and/or field selector) as the API server publishes them: a list, then a
    watch from its resourceVersion, so every write arrives as an event, in order. Subclasses say what
    they keep in `listed` and `changed` (both called under `_lock`). Use as a context manager."""

    api: client.ApiClient
    namespace: str
    label_selector: str | None = None
    field_selector: str | None = None
    events: int = 0
    error: str | None = None
    _watch: Any = field(default_factory=watch.Watch)  # the client's Watch is untyped
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopped_at: float | None = None

    def listed(self, pods: list[kube.Pod], now: float) -> None:
        """The pods as listed when the stream starts."""

    def changed(self, kind: str, pod: kube.Pod, now: float) -> None:
        """One watch event: `kind` is ADDED, MODIFIED or DELETED."""

    def _selectors(self) -> dict[str, str]:
        found = {"label_selector": self.label_selector, "field_selector": self.field_selector}
        return {k: v for k, v in found.items() if v}

    def __enter__(self) -> Self:
        resp = kube.core(self.api).list_namespaced_pod(
            self.namespace, _preload_content=False, **self._selectors()
        )
        listing = json.loads(resp.data)
        with self._lock:
            self.listed(listing["items"], time.monotonic())
        self._thread = threading.Thread(
            target=self._run, args=(listing["metadata"]["resourceVersion"],), daemon=True
        )
        self._thread.start()
        return self

    def _run(self, resource_version: str) -> None:
        stream = self._watch.stream(
            kube.core(self.api).list_namespaced_pod,
            self.namespace,
            resource_version=resource_version,
            **self._selectors(),
        )
        try:
            for event in stream:
                now = time.monotonic()
                with self._lock:
                    self.events += 1
                    self.changed(event["type"], event["raw_object"], now)
        except Exception as exc:  # a broken watch must fail the measurement, not pass it silently
            if not self._stopping.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped_at = time.monotonic()
        self._stopping.set()
        self._watch.stop()
        self._thread.join(10)


@dataclass
class ReadinessWatch(PodStream):
    """The Ready condition of a namespace's pods as the API server publishes it, i.e. what Services see.
    A watch, not a poll: every status the kubelet writes arrives as an event, so no NotReady blip falls
    between two samples. A pod's NotReady window runs from the event showing it NotReady to the one
    showing it Ready again. Use as a context manager; read `not_ready_s()` after."""

    pods: dict[str, PodReady] = field(default_factory=dict)

    def listed(self, pods: list[kube.Pod], now: float) -> None:
        for pod in pods:
            self.pods[pod["metadata"]["name"]] = PodReady(kube.condition(pod, "Ready"), now)

    def changed(self, kind: str, pod: kube.Pod, now: float) -> None:
        name = pod["metadata"]["name"]
        ready = kind != "DELETED" and kube.condition(pod, "Ready")
        shown = container_states(pod)
        self.pods.setdefault(name, PodReady(ready, now)).seen(ready, now, containers=shown)

    def all_ready(self) -> bool:
        with self._lock:
            return all(p.ready for p in self.pods.values())

    def not_ready_s(self) -> dict[str, float]:
        """NotReady seconds per pod; a window still open when the watch stopped counts up to then."""
        assert self._stopped_at is not None, "read after the watch has stopped"
        with self._lock:
            return {name: round(p.closed(self._stopped_at), 2) for name, p in self.pods.items()}

    def flips(self) -> dict[str, int]:
        with self._lock:
            return {name: p.flips for name, p in self.pods.items()}

    def timeline(self, name: str) -> tuple[str, ...]:
        """Pod `name`'s Ready flips as seen: UTC time, Ready or NotReady, its containers' states."""
        with self._lock:
            found = self.pods.get(name)
            return tuple(found.timeline) if found else ()

    def settle(self, timeout: float) -> None:
        """Wait (up to `timeout`) until every watched pod is Ready, then SETTLE_S more: a window still
        open is measured to its end, not cut at the outcome."""
        deadline = time.monotonic() + timeout
        while not self.all_ready() and time.monotonic() < deadline and self.error is None:
            time.sleep(0.1)
        time.sleep(SETTLE_S)


def container_states(pod: kube.Pod) -> str:
    """Each container of `pod` that is not running and ready, with its state and reason (for timelines)."""
    status = pod.get("status", {})
    shown = []
    for each in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        state = each.get("state") or {}
        if "running" in state and each.get("ready"):
            continue
        kind = next(iter(state), "unknown")
        reason = (state.get(kind) or {}).get("reason") or ""
        shown.append(f"{each.get('name')}={kind}{'/' + reason if reason else ''}")
    return " ".join(shown)


def assert_within_budget(
    ready: ReadinessWatch, phase: Phase, budgets: Mapping[Phase, float] | None = NOT_READY_BUDGET_S
) -> dict[str, float]:
    """Fail when a pod's NotReady exceeds the budget for `phase` (None: no budget, only a working watch),
    or the watch broke; the NotReady seconds per pod."""
    assert ready.error is None, f"the readiness watch broke: {ready.error}"
    # The measurement itself must have worked: an upgrade writes its record on the pod, an event.
    assert ready.events > 0, "the readiness watch received no event"
    windows = ready.not_ready_s()
    assert windows, "the readiness watch saw no pod"
    if budgets is None:
        return windows
    budget = budgets[phase]
    over = {pod: seconds for pod, seconds in windows.items() if seconds > budget}
    assert not over, (
        f"NotReady longer than the README's budget of {budget} s for a {phase} upgrade: {over} "
        f"(Ready flips: {ready.flips()})"
    )
    return windows


def annotate_target(
    api: client.ApiClient, namespace: str, name: str, image: str, *, retry_token: str | None = None
) -> None:
    """Ask for `image`; with `retry_token`, also for a new attempt as `hotupgrade retry` does."""
    annotations = {ANNOTATION_TARGET_IMAGE: image}
    if retry_token is not None:
        annotations[ANNOTATION_RETRY] = retry_token
    kube.core(api).patch_namespaced_pod(name, namespace, {"metadata": {"annotations": annotations}})


def wait_controller_outcome(
    api: client.ApiClient,
    namespace: str,
    name: str,
    image: str,
    timeout: float,
    *,
    retry_token: str | None = None,
) -> Outcome:
    """Wait until the controller's record for `image` (and the attempt that consumed `retry_token`, if
    given) reaches a terminal phase (Completed or Failed)."""

    def done() -> Outcome | None:
        pod = kube.get_pod(api, namespace, name)
        record = upgrade_record(pod)
        if record is None or record.to_image != image or record.phase not in TERMINAL:
            return None
        if retry_token is not None and record.retry_token != retry_token:
            return None  # still the failed attempt before the retry
        return Outcome(record.phase, record.message, pod)

    return kube.wait_until(f"upgrade of {namespace}/{name} to {image}", done, timeout, interval=0.5)


def upgrade(
    api: client.ApiClient,
    namespace: str,
    name: str,
    image: str,
    timeout: float,
    *,
    budget: Mapping[Phase, float] | None = NOT_READY_BUDGET_S,
    retry: bool = False,
) -> Outcome:
    """Upgrade one pod's sidecar to `image` by annotation; the outcome the controller recorded, with the
    pod's NotReady time, which must be within `budget` for that outcome (AssertionError). `budget` None:
    measured only, for an upgrade outside the README's promise (the kubelet pulling without pre-pull).
    `retry`: the last upgrade to `image` failed; a new attempt, as `hotupgrade retry` starts it."""
    token = uuid.uuid4().hex if retry else None
    with ReadinessWatch(api, namespace, field_selector=f"metadata.name={name}") as ready:
        annotate_target(api, namespace, name, image, retry_token=token)
        outcome = wait_controller_outcome(api, namespace, name, image, timeout, retry_token=token)
        ready.settle(max(NOT_READY_BUDGET_S.values()) + 10.0)
    timeline = ready.timeline(name)
    try:
        windows = assert_within_budget(ready, outcome.phase, budget)
    except AssertionError as over:
        raise AssertionError(f"{over}; Ready flips: {list(timeline)}") from None
    return replace(
        outcome, not_ready_s=windows[name], ready_flips=ready.flips()[name], ready_timeline=timeline
    )
