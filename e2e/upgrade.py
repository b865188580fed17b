"""Drive a sidecar upgrade the way users do (annotate the pod; the controller acts) or, without the
controller, with the same API calls it makes (JSON patches with a `test` op), and read the outcome."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from e2e import kube
from webhook import contract
from webhook.injection_status import InjectionStatus, parse_status


def status_of(pod: kube.Pod) -> InjectionStatus:
    return parse_status(pod["metadata"]["annotations"][contract.ANNOTATION_STATUS])


def upgrade_record(pod: kube.Pod) -> dict[str, Any] | None:
    raw = (pod["metadata"].get("annotations") or {}).get(contract.ANNOTATION_UPGRADE)
    return json.loads(raw) if raw else None


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


# Container waiting reasons that will not resolve by themselves.
STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "CreateContainerError",
        "ErrImageNeverPull",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "RunContainerError",
    }
)


@dataclass
class Outcome:
    """What an upgrade ended as: the record's phase and message, and the pod afterwards."""

    phase: str
    message: str
    pod: kube.Pod


def annotate_target(api: client.ApiClient, namespace: str, name: str, image: str) -> None:
    body = {"metadata": {"annotations": {contract.ANNOTATION_TARGET_IMAGE: image}}}
    kube.core(api).patch_namespaced_pod(name, namespace, body)


def wait_controller_outcome(
    api: client.ApiClient, namespace: str, name: str, image: str, timeout: float
) -> Outcome:
    """Wait until the controller's record for `image` reaches Completed or Failed."""

    def done() -> Outcome | None:
        pod = kube.get_pod(api, namespace, name)
        record = upgrade_record(pod)
        if record and record.get("to") == image and record.get("phase") in ("Completed", "Failed"):
            return Outcome(str(record["phase"]), str(record.get("message", "")), pod)
        return None

    return kube.wait_until(f"upgrade of {namespace}/{name} to {image}", done, timeout, interval=0.5)


def direct_upgrade(
    admin: client.ApiClient,
    controller: client.ApiClient,
    *,
    namespace: str,
    name: str,
    image: str,
    timeout: float,
) -> Outcome:
    """The controller's steps done here: standby -> target, wait takeover + drain, old -> empty, record."""
    pod = kube.get_pod(admin, namespace, name)
    status = status_of(pod)
    old, new = status.active, status.standby
    old_slot, new_slot = status.slots[old], status.slots[new]
    before = kube.container_status(pod, new)
    json_patch(controller, namespace, name, set_image_ops(pod, new, status.empty_image, image))
    ip = pod["status"]["podIP"]

    def runs_image(container: str, image: str) -> bool:
        cs = kube.container_status(kube.get_pod(admin, namespace, name), container)
        return "running" in cs.get("state", {}) and str(cs.get("image", "")).endswith(image)

    def taken_over() -> str | None:
        """ "ok" once the new slot serves, "failed: ..." as soon as it cannot, else None (keep waiting)."""
        cs = kube.container_status(kube.get_pod(admin, namespace, name), new)
        # The image change itself restarts the container once; any further restart is a failed start.
        if cs.get("restartCount", 0) > before.get("restartCount", 0) + 1:
            return f"failed: {new} restarted: {cs.get('lastState')}"
        waiting = cs.get("state", {}).get("waiting", {}).get("reason")
        if waiting in STUCK_REASONS:
            return f"failed: {new} {waiting}"
        if cs.get("containerID") in (None, before.get("containerID")) or "running" not in cs.get("state", {}):
            return None
        agent = agent_status(ip, new_slot) or {}
        if agent.get("phase") == "failed":
            return f"failed: agent of slot {new_slot}: {agent.get('last_error')}"
        return "ok" if agent.get("role") == "active" and agent.get("phase") == "serving" else None

    try:
        result = kube.wait_until(f"{new} takes over", taken_over, timeout, interval=0.5)
    except TimeoutError as exc:
        result = f"failed: {exc}"
    if result != "ok":
        pod = kube.get_pod(admin, namespace, name)
        json_patch(controller, namespace, name, set_image_ops(pod, new, image, status.empty_image))
        kube.wait_until(
            f"{new} back on the empty image", lambda: runs_image(new, status.empty_image), timeout
        )
        return Outcome("Failed", f"{result}; rolled back", kube.get_pod(admin, namespace, name))

    def drained() -> bool:
        agent = agent_status(ip, new_slot) or {}
        return bool(agent.get("state", {}).get("slots", {}).get(old_slot, {}).get("phase") == "retired")

    kube.wait_until(f"{old} drained", drained, timeout, interval=0.5)
    pod = kube.get_pod(admin, namespace, name)
    old_before = kube.container_status(pod, old).get("containerID")
    new_status = status.swapped(sidecar_image=image)
    ops = set_image_ops(pod, old, kube.container_image(pod, old), status.empty_image)
    ops.append(
        {
            "op": "replace",
            "path": "/metadata/annotations/" + contract.ANNOTATION_STATUS.replace("/", "~1"),
            "value": new_status.render(),
        }
    )
    json_patch(controller, namespace, name, ops)

    def reset() -> bool:
        cs = kube.container_status(kube.get_pod(admin, namespace, name), old)
        return cs.get("containerID") not in (None, old_before) and "running" in cs.get("state", {})

    kube.wait_until(f"{old} back on the empty image", reset, timeout, interval=0.5)
    return Outcome("Completed", "", kube.get_pod(admin, namespace, name))
