"""A frozen snapshot of one pod as the step function sees it, parsed from raw API JSON.

Pure: the shell fetches the pod (raw JSON, no client models) and the agents' `/status` documents and
hands them to `observe_pod`; nothing here does I/O or reads a clock.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhook.contract import ENV_PARENT_SHUTDOWN_SECONDS


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


@dataclass(frozen=True)
class PrePullView:
    """The pre-pull pod of the upgrade in flight (absent when `exists` is false)."""

    exists: bool
    phase: str | None = None
    waiting_reason: str | None = None
    message: str | None = None


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

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _container_view(spec: Mapping[str, Any], path: str, status: Mapping[str, Any] | None) -> ContainerView:
    env = {
        str(e["name"]): str(e["value"])
        for e in spec.get("env") or []
        if isinstance(e, dict) and "name" in e and isinstance(e.get("value"), str)
    }
    base = ContainerView(name=str(spec["name"]), spec_path=path, image=str(spec.get("image", "")), env=env)
    if not status:
        return base
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    exit_code = terminated.get("exitCode")
    return ContainerView(
        name=base.name,
        spec_path=path,
        image=base.image,
        env=env,
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
    )


def normalize_image(ref: str) -> str:
    """`nginx` and `docker.io/library/nginx:latest` are one image; the kubelet reports either form."""
    name = ref.removeprefix("index.docker.io/").removeprefix("docker.io/").removeprefix("library/")
    last = name.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        name += ":latest"
    return name


def runs_spec_image(container: ContainerView) -> bool:
    """The kubelet reports the current container on the image the spec names (not a stale one)."""
    return container.status_image is not None and normalize_image(container.status_image) == normalize_image(
        container.image
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
) -> ObservedPod:
    """Build the snapshot from a raw pod document (as returned by the API server)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
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
    )


def pre_pull_view(pod: Mapping[str, Any] | None) -> PrePullView:
    """What the step function needs to know about the pre-pull pod (raw JSON, None when absent)."""
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
    return AgentView(
        slot=slot,
        reachable=True,
        role=document.get("role") if isinstance(document.get("role"), str) else None,
        phase=document.get("phase") if isinstance(document.get("phase"), str) else None,
        epoch=epoch if isinstance(epoch, int) else None,
        last_error=str(document["last_error"]) if document.get("last_error") else None,
        active_slot=active if isinstance(active, str) else None,
        slot_phases=phases,
    )


def parent_shutdown_seconds(container: ContainerView, default: int) -> int:
    """The old Envoy's --parent-shutdown-time-s as injected into the container's env."""
    raw = container.env.get(ENV_PARENT_SHUTDOWN_SECONDS)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default
