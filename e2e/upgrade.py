"""Drive a sidecar upgrade the way users do (annotate the pod; the in-cluster controller acts) and read
its outcome from the controller's own record (controller/record.py), parsed by the controller's parser."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from controller.keys import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE
from controller.record import Phase, UpgradeRecord, parse_record
from e2e import kube
from webhook import contract
from webhook.injection_status import InjectionStatus, parse_status

TERMINAL = (Phase.COMPLETED, Phase.FAILED)


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
    """What an upgrade ended as: the record's phase and message, and the pod afterwards."""

    phase: Phase
    message: str
    pod: kube.Pod


def annotate_target(api: client.ApiClient, namespace: str, name: str, image: str) -> None:
    body = {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: image}}}
    kube.core(api).patch_namespaced_pod(name, namespace, body)


def wait_controller_outcome(
    api: client.ApiClient, namespace: str, name: str, image: str, timeout: float
) -> Outcome:
    """Wait until the controller's record for `image` reaches a terminal phase (Completed or Failed)."""

    def done() -> Outcome | None:
        pod = kube.get_pod(api, namespace, name)
        record = upgrade_record(pod)
        if record is not None and record.to_image == image and record.phase in TERMINAL:
            return Outcome(record.phase, record.message, pod)
        return None

    return kube.wait_until(f"upgrade of {namespace}/{name} to {image}", done, timeout, interval=0.5)


def upgrade(api: client.ApiClient, namespace: str, name: str, image: str, timeout: float) -> Outcome:
    """Upgrade one pod's sidecar to `image` by annotation; the outcome the controller recorded."""
    annotate_target(api, namespace, name, image)
    return wait_controller_outcome(api, namespace, name, image, timeout)
