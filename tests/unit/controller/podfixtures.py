"""Raw pod documents and agent views for the step-function tests, shaped like API server output."""

import copy
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from clusterkit.records import EMPTY, NEW, OLD, STATUS, T0, upgrade_record
from controller.keys import (
    ANNOTATION_STATUS,
    ANNOTATION_TARGET_IMAGE,
    ANNOTATION_UPGRADE,
)
from controller.observed import AgentView, BudgetView, KubeletEvent, ObservedPod, PrePullView, observe_pod
from controller.record import Phase, Reason, UpgradeRecord
from webhook.injection_status import InjectionStatus

__all__ = [  # the record and status factory is clusterkit.records' (the bench shares it); re-exported
    "EMPTY",
    "NEW",
    "OLD",
    "STATUS",
    "T0",
    "upgrade_record",
]

ADMITTED = BudgetView(admitted=True)  # no PodDisruptionBudget holds the pod back


# A record in flight (rolling back) with most optional fields set and no owed Event.
RECORD = upgrade_record(
    phase=Phase.ROLLING_BACK,
    attempt=2,
    message="rolling back: x",
    reason=Reason.TAKE_OVER_TIMEOUT,
    standby_id_before="containerd://b1",
    standby_restarts_before=0,
    rollback_from_id="containerd://b2",
    retry_token="r1",
    abort_token="x1",
)


def container_status(name: str, image: str, cid: str | None, *, state: str = "running", **extra: Any) -> Any:
    states: dict[str, Any] = {
        "running": {"running": {"startedAt": "2026-11-26T11:00:00Z"}},
        "waiting": {
            "waiting": {
                "reason": extra.pop("reason", "ContainerCreating"),
                "message": extra.pop("message", ""),
            }
        },
        "terminated": {
            "terminated": {"reason": extra.pop("reason", "Error"), "exitCode": extra.pop("exit_code", 1)}
        },
    }
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": extra.pop("image_id", f"{image}@sha256:{abs(hash(image)):x}"),
        "restartCount": extra.pop("restarts", 0),
        "ready": state == "running",
        "started": state == "running",
        "state": states[state],
    }
    if cid:
        out["containerID"] = cid
    return out


def raw_pod(
    *,
    status: InjectionStatus | None = STATUS,
    target: str | None = NEW,
    record: UpgradeRecord | None = None,
    ready: bool = True,
    parent_shutdown: int = 30,
) -> dict[str, Any]:
    """An injected pod: app container plus the pair, slot a active on OLD, slot b on EMPTY."""
    annotations: dict[str, str] = {}
    if status is not None:
        annotations[ANNOTATION_STATUS] = status.render()
    if target is not None:
        annotations[ANNOTATION_TARGET_IMAGE] = target
    if record is not None:
        annotations[ANNOTATION_UPGRADE] = record.render()
    env = [{"name": "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS", "value": str(parent_shutdown)}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "uid": "0b5e3c9e-1111-4e6f-9b1c-2f0e7d6a5c01",
            "resourceVersion": "1000",
            "annotations": annotations,
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "hotupgrade-a", "image": OLD, "env": env},
                {"name": "hotupgrade-b", "image": EMPTY, "env": env},
                {"name": "app", "image": "registry.local/demo-app:1"},
            ],
        },
        "status": {
            "podIP": "10.88.0.7",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                container_status("hotupgrade-a", OLD, "containerd://a1"),
                container_status("hotupgrade-b", EMPTY, "containerd://b1"),
                container_status("app", "registry.local/demo-app:1", "containerd://app1"),
            ],
        },
    }


def set_container(
    pod: dict[str, Any], name: str, *, image: str | None = None, **status: Any
) -> dict[str, Any]:
    """A copy of `pod` with container `name` given a new spec image and/or a new kubelet status."""
    out = copy.deepcopy(pod)
    for container in out["spec"]["containers"]:
        if container["name"] == name and image is not None:
            container["image"] = image
    if status:
        statuses = out["status"]["containerStatuses"]
        index = next(i for i, s in enumerate(statuses) if s["name"] == name)
        spec_image = next(c["image"] for c in out["spec"]["containers"] if c["name"] == name)
        statuses[index] = container_status(
            name, status.pop("status_image", spec_image), status.pop("cid"), **status
        )
    return out


def agent(
    slot: str,
    role: str,
    phase: str,
    *,
    active: str = "a",
    slots: dict[str, str] | None = None,
    epoch: int | None = 0,
    last_error: str | None = None,
) -> AgentView:
    return AgentView(
        slot=slot,
        reachable=True,
        role=role,
        phase=phase,
        epoch=epoch,
        last_error=last_error,
        active_slot=active,
        slot_phases=slots or {},
    )


def unreachable(slot: str) -> AgentView:
    return AgentView(slot=slot, reachable=False, error="NewConnectionError")


SERVING_A = {
    "a": agent("a", "active", "serving", slots={"a": "serving", "b": "standby"}),
    "b": unreachable("b"),
}


NO_ANSWER: Mapping[str, AgentView] = MappingProxyType({})  # both agents asked, neither answered


def observe(
    pod: dict[str, Any],
    *,
    agents: Mapping[str, AgentView] | None = NO_ANSWER,
    after: float = 0.0,
    pre_pull: PrePullView | None = None,
    budget: BudgetView | None = ADMITTED,
    kubelet_events: Iterable[KubeletEvent] | None = (),
) -> ObservedPod:
    """The snapshot `after` seconds past T0; `agents=None`, `pre_pull=None`, `budget=None`,
    `kubelet_events=None`: not asked (by default the kubelet recorded no Event)."""
    return observe_pod(
        pod,
        now=T0 + timedelta(seconds=after),
        agents=agents,
        pre_pull=pre_pull,
        budget=budget,
        kubelet_events=kubelet_events,
    )
