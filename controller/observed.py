"""A frozen snapshot of one pod as the step function sees it, parsed from raw API JSON, and what the
kubelet's container reports mean: which image a container runs (`runs_image`: by digest first, however
the kubelet spells `status.image`) and whether it is a new container (`replaced_since`).

Pure: the shell fetches the pod (raw JSON, no client models), the agents' `/status` documents and,
when asked, the pre-pull pod and the node, and hands them to `observe_pod`; no I/O, no clock.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from releaseapi.apitime import parse_time
from releaseapi.imageref import digest_of, normalize_image, same_name
from webhook.contract import ENV_PARENT_SHUTDOWN_SECONDS

__all__ = [  # normalize_image moved to releaseapi.imageref; kept importable from here
    "AgentView",
    "BudgetView",
    "ContainerView",
    "KubeletEvent",
    "NodeView",
    "ObservedPod",
    "PrePullView",
    "Seen",
    "agent_view",
    "containers_of",
    "kubelet_events_view",
    "node_view",
    "normalize_image",
    "observe_pod",
    "parent_shutdown_seconds",
    "pod_is_ready",
    "pre_pull_view",
    "replaced_since",
    "runs_fresh",
    "runs_image",
    "same_image",
    "still_the_container",
]


@dataclass(frozen=True)
class ContainerView:
    """One container of the pod: its spec image and what the kubelet reports about it."""

    name: str
    spec_path: str  # JSON pointer of the container in the pod, e.g. /spec/containers/1
    image: str
    env: Mapping[str, str] = field(default_factory=dict)  # literal env values only
    container_id: str | None = None
    status_image: str | None = None  # the image the kubelet says the current container runs
    image_id: str | None = None
    restart_count: int = 0
    ready: bool = False
    running: bool = False
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_reason: str | None = None
    terminated_exit_code: int | None = None
    terminated_message: str | None = None
    started_at: datetime | None = None  # state.running.startedAt
    finished_at: datetime | None = None  # state.terminated.finishedAt
    last_container_id: str | None = None  # lastState.terminated.containerID: the instance before this one
    last_finished_at: datetime | None = None  # lastState.terminated.finishedAt
    native_sidecar: bool = False  # an init container with restartPolicy Always
    run_as_user: int | None = None  # securityContext of the container spec
    run_as_group: int | None = None


@dataclass(frozen=True)
class Seen:
    """A container as the controller saw it before changing its image (fields the record keeps)."""

    container_id: str | None
    restart_count: int | None = None
    image_id: str | None = None

    @staticmethod
    def of(container: ContainerView) -> "Seen":
        return Seen(container.container_id, container.restart_count, container.image_id)


@dataclass(frozen=True)
class AgentView:
    """What one slot's agent said on `GET /status`, or why it could not be asked."""

    slot: str
    reachable: bool
    error: str | None = None
    role: str | None = None
    phase: str | None = None
    epoch: int | None = None
    last_error: str | None = None
    active_slot: str | None = None  # state.active_slot of the shared state file
    slot_phases: Mapping[str, str] = field(default_factory=dict)  # state.slots.<slot>.phase
    fences: bool = False  # schemaVersion 1.4+: it answers POST /fence (docs/contract.md)
    fence_slot: str | None = None  # the run dir's take-over fence: the slot it covers ...
    fence_token: str | None = None  # ... and the controller attempt that recorded it


@dataclass(frozen=True)
class PrePullView:
    """The pre-pull pod of the upgrade in flight (absent when `exists` is false).

    `message` is the `pull` container's (waiting or terminated); `reason`/`reason_message` are the pod's
    own (the kubelet refusing it: OutOfcpu, NodeAffinity, ...) or those of a condition that is False
    (Unschedulable, ...).
    """

    exists: bool
    phase: str | None = None
    waiting_reason: str | None = None
    message: str | None = None
    reason: str | None = None
    reason_message: str | None = None
    terminated_reason: str | None = None
    exit_code: int | None = None
    image_id: str | None = None  # the `pull` container's status.imageID: what the target's tag resolved to


@dataclass(frozen=True)
class NodeView:
    """The node the pod runs on, as far as the step function cares: its kubelet's version."""

    name: str
    kubelet_version: str | None = None  # status.nodeInfo.kubeletVersion, e.g. "v1.34.4"
    error: str | None = None  # why it could not be read (then the version is unknown)


@dataclass(frozen=True)
class KubeletEvent:
    """A kubelet Event about one container of the pod (core/v1: reason, involvedObject.fieldPath)."""

    container: str
    reason: str  # Killing, Pulling, Created, Started, ... (pkg/kubelet/events/event.go)
    last_seen: datetime  # lastTimestamp (whole seconds, the node's clock), else eventTime/firstTimestamp


@dataclass(frozen=True)
class BudgetView:
    """Whether the PodDisruptionBudgets selecting the pod let its upgrade start now (controller.budgetgate);
    when not, `message` names the budget and its numbers (`PodDisruptionBudget web-pdb: 1 of 1 ...`)."""

    admitted: bool
    message: str = ""


@dataclass(frozen=True)
class ObservedPod:
    """Everything `next_step` may look at: one pod, its agents, maybe its pre-pull pod, and now."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    annotations: Mapping[str, str]
    containers: Mapping[str, ContainerView]
    now: datetime
    node_name: str | None = None
    pod_ip: str | None = None
    pod_ready: bool = False
    deleting: bool = False
    agents: Mapping[str, AgentView] | None = None  # None: not asked (the step function says when it must be)
    pre_pull: PrePullView | None = None  # None: not looked up (likewise)
    node: NodeView | None = None  # None: not looked up (likewise)
    budget: BudgetView | None = None  # None: not asked (likewise; asked only when an upgrade would start)
    kubelet_events: tuple[KubeletEvent, ...] | None = None  # None: not read (likewise)
    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    run_as_user: int | None = None  # pod securityContext
    run_as_group: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, `Z`), or None when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _container_view(spec: Mapping[str, Any], path: str, status: Mapping[str, Any] | None) -> ContainerView:
    env = {
        str(e["name"]): str(e["value"])
        for e in spec.get("env") or []
        if isinstance(e, dict) and "name" in e and isinstance(e.get("value"), str)
    }
    security = spec.get("securityContext") or {}
    base = ContainerView(
        name=str(spec["name"]),
        spec_path=path,
        image=str(spec.get("image", "")),
        env=env,
        native_sidecar=path.startswith("/spec/initContainers/") and spec.get("restartPolicy") == "Always",
        run_as_user=_int_or_none(security.get("runAsUser")),
        run_as_group=_int_or_none(security.get("runAsGroup")),
    )
    if not status:
        return base
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    exit_code = terminated.get("exitCode")
    last = (status.get("lastState") or {}).get("terminated") or {}
    return replace(
        base,
        container_id=status.get("containerID") or None,
        status_image=status.get("image") or None,
        image_id=status.get("imageID") or None,
        restart_count=int(status.get("restartCount") or 0),
        ready=bool(status.get("ready")),
        running="running" in state,
        waiting_reason=waiting.get("reason") if "waiting" in state else None,
        waiting_message=waiting.get("message") if "waiting" in state else None,
        terminated_reason=terminated.get("reason") if "terminated" in state else None,
        terminated_exit_code=int(exit_code) if isinstance(exit_code, int) else None,
        terminated_message=terminated.get("message") if "terminated" in state else None,
        started_at=_time((state.get("running") or {}).get("startedAt")),
        finished_at=_time(terminated.get("finishedAt")),
        last_container_id=last.get("containerID") or None,
        last_finished_at=_time(last.get("finishedAt")),
    )


def _image_key(image_id: str) -> str:
    return digest_of(image_id) or image_id


def same_image(a: str, b: str) -> bool:
    """Two references are one image as far as their text tells: equal digests when both pin one, else
    the same repository and tag. A digest and a tag cannot be compared without a registry: False."""
    digest_a, digest_b = digest_of(a), digest_of(b)
    if digest_a is not None or digest_b is not None:
        return digest_a == digest_b
    return same_name(a, b)


def same_image_id(a: str | None, b: str | None) -> bool:
    """Two kubelet `imageID`s are one image: the same digest (or the same bare ID). Unknown is never equal."""
    return a is not None and b is not None and _image_key(a) == _image_key(b)


def runs_image(container: ContainerView, image: str) -> bool:
    """The kubelet reports `container` on `image`, however it spells it: the digest `image` pins is the
    container's image ID (or its `status.image`), else `status.image` names the same repository and tag."""
    wanted = digest_of(image)
    if wanted is not None:
        return wanted in (digest_of(container.image_id), digest_of(container.status_image))
    return container.status_image is not None and same_name(container.status_image, image)


def replaced_since(container: ContainerView, seen: Seen) -> bool:
    """A container other than the one `seen` runs now: a new containerID, or more restarts."""
    if not container.running:
        return False
    new_id = container.container_id is not None and container.container_id != seen.container_id
    restarted = seen.restart_count is not None and container.restart_count > seen.restart_count
    return new_id or restarted


def runs_fresh(container: ContainerView, image: str, seen: Seen) -> bool:
    """Replaced since `seen` and now on `image`. When the kubelet's name for the image cannot tell (another
    tag of the same digest, a bare `sha256:` ID: kubernetes#51017), an image ID other than the one `seen`
    ran is the new image: the only other thing a fresh container can run is the image it ran before."""
    if not replaced_since(container, seen):
        return False
    if runs_image(container, image):
        return True
    if seen.image_id is None or container.image_id is None:
        return False
    return _image_key(container.image_id) != _image_key(seen.image_id)


def still_the_container(container: ContainerView, seen: Seen) -> bool:
    """The very container `seen`, still running on the image it ran then (the kubelet did nothing)."""
    if not container.running or replaced_since(container, seen) or container.container_id is None:
        return False
    if container.container_id != seen.container_id:
        return False
    return (
        seen.image_id is None
        or container.image_id is None
        or (_image_key(container.image_id) == _image_key(seen.image_id))
    )


def containers_of(pod: Mapping[str, Any]) -> dict[str, ContainerView]:
    """All containers and init containers (native sidecars live there) by name."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    out: dict[str, ContainerView] = {}
    for spec_key, status_key in (
        ("initContainers", "initContainerStatuses"),
        ("containers", "containerStatuses"),
    ):
        statuses = {s.get("name"): s for s in status.get(status_key) or [] if isinstance(s, dict)}
        for index, container in enumerate(spec.get(spec_key) or []):
            path = f"/spec/{spec_key}/{index}"
            out[str(container["name"])] = _container_view(container, path, statuses.get(container["name"]))
    return out


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def observe_pod(
    pod: Mapping[str, Any],
    *,
    now: datetime,
    agents: Mapping[str, AgentView] | None = None,
    pre_pull: PrePullView | None = None,
    node: NodeView | None = None,
    budget: BudgetView | None = None,
    kubelet_events: Iterable[KubeletEvent] | None = None,
) -> ObservedPod:
    """Build the snapshot from a raw pod document (as returned by the API server)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    security = spec.get("securityContext") or {}
    secrets = tuple(
        str(ref["name"])
        for ref in spec.get("imagePullSecrets") or []
        if isinstance(ref, dict) and isinstance(ref.get("name"), str) and ref["name"]
    )
    return ObservedPod(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        containers=containers_of(pod),
        now=now,
        node_name=spec.get("nodeName"),
        pod_ip=status.get("podIP") or None,
        pod_ready=pod_is_ready(pod),
        deleting=bool(meta.get("deletionTimestamp")),
        agents=dict(agents) if agents is not None else None,
        pre_pull=pre_pull,
        node=node,
        budget=budget,
        kubelet_events=tuple(kubelet_events) if kubelet_events is not None else None,
        service_account=spec.get("serviceAccountName") or None,
        image_pull_secrets=secrets,
        run_as_user=_int_or_none(security.get("runAsUser")),
        run_as_group=_int_or_none(security.get("runAsGroup")),
    )


def pre_pull_view(pod: Mapping[str, Any] | None) -> PrePullView:
    """What the step function needs to know about the pre-pull pod (raw JSON, None when absent)."""
    if pod is None:
        return PrePullView(exists=False)
    status = pod.get("status") or {}
    pull = containers_of(pod).get("pull")
    reason, message = status.get("reason"), status.get("message")
    if not reason:  # e.g. PodScheduled False/Unschedulable: the last condition that did not pass
        for condition in status.get("conditions") or []:
            if isinstance(condition, dict) and condition.get("status") == "False" and condition.get("reason"):
                reason, message = condition["reason"], condition.get("message")
    return PrePullView(
        exists=True,
        phase=status.get("phase"),
        waiting_reason=pull.waiting_reason if pull else None,
        message=((pull.waiting_message or pull.terminated_message) if pull else None) or None,
        reason=reason or None,
        reason_message=message or None,
        terminated_reason=pull.terminated_reason if pull else None,
        exit_code=pull.terminated_exit_code if pull else None,
        image_id=pull.image_id if pull else None,
    )


def node_view(name: str, node: Mapping[str, Any] | None, *, error: str | None = None) -> NodeView:
    """The kubelet version of a raw Node document (None with `error`: it could not be read)."""
    if node is None:
        return NodeView(name=name, error=error or "node not found")
    info = (node.get("status") or {}).get("nodeInfo") or {}
    version = info.get("kubeletVersion")
    return NodeView(name=name, kubelet_version=version if isinstance(version, str) and version else None)


_CONTAINER_FIELD = re.compile(r"^spec\.(?:containers|initContainers|ephemeralContainers)\{(.+)\}$")


def kubelet_events_view(events: Iterable[Mapping[str, Any]]) -> tuple[KubeletEvent, ...]:
    """The kubelet's Events about the pod's containers, from raw core/v1 Events of the pod; others (the
    controller's own, the scheduler's, the pod as a whole, no timestamp) are left out."""
    out: list[KubeletEvent] = []
    for event in events:
        source = event.get("source") or {}
        if "kubelet" not in (source.get("component"), event.get("reportingComponent")):
            continue
        found = _CONTAINER_FIELD.match(str((event.get("involvedObject") or {}).get("fieldPath") or ""))
        series = event.get("series") or {}
        times = (event.get("lastTimestamp"), series.get("lastObservedTime"), event.get("eventTime"))
        seen = [t for t in map(_time, (*times, event.get("firstTimestamp"))) if t is not None]
        if found is None or not seen or not isinstance(event.get("reason"), str):
            continue
        out.append(KubeletEvent(container=found.group(1), reason=event["reason"], last_seen=max(seen)))
    return tuple(out)


def agent_view(slot: str, document: Any) -> AgentView:
    """Parse an agent's `/status` JSON (fields per docs/contract.md); malformed means unreachable."""
    if not isinstance(document, dict):
        return AgentView(slot=slot, reachable=False, error="status is not a JSON object")
    state_raw = document.get("state")
    state: dict[str, Any] = state_raw if isinstance(state_raw, dict) else {}
    slots_raw = state.get("slots")
    slots: dict[str, Any] = slots_raw if isinstance(slots_raw, dict) else {}
    phases = {
        str(name): str(info["phase"])
        for name, info in slots.items()
        if isinstance(info, dict) and isinstance(info.get("phase"), str)
    }
    epoch = document.get("epoch")
    active = state.get("active_slot")
    fence = document.get("fence")
    fence = fence if isinstance(fence, dict) else {}
    return AgentView(
        slot=slot,
        reachable=True,
        role=document.get("role") if isinstance(document.get("role"), str) else None,
        phase=document.get("phase") if isinstance(document.get("phase"), str) else None,
        epoch=epoch if isinstance(epoch, int) else None,
        last_error=str(document["last_error"]) if document.get("last_error") else None,
        active_slot=active if isinstance(active, str) else None,
        slot_phases=phases,
        fences=_at_least(document.get("schemaVersion"), (1, 4)),
        fence_slot=str(fence["slot"]) if isinstance(fence.get("slot"), str) else None,
        fence_token=str(fence["token"]) if isinstance(fence.get("token"), str) else None,
    )


def _at_least(version: object, wanted: tuple[int, int]) -> bool:
    """Whether a `schemaVersion` "MAJOR.MINOR" is of major `wanted[0]` and at least `wanted`."""
    if not isinstance(version, str):
        return False
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return False
    return int(major) == wanted[0] and int(minor) >= wanted[1]


def parent_shutdown_seconds(container: ContainerView, default: int) -> int:
    """The old Envoy's --parent-shutdown-time-s as injected into the container's env."""
    raw = container.env.get(ENV_PARENT_SHUTDOWN_SECONDS)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default
