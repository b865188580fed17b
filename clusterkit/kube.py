"""Thin helpers over the Kubernetes API for the e2e suite: clients, waits, pod facts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from webhook import kubeclient

T = TypeVar("T")
Pod = dict[str, Any]


def api_client() -> client.ApiClient:
    """An ApiClient for the cluster KUBECONFIG names (the project's one loader, as the CLI uses it)."""
    return kubeclient.load_api_client(fallbacks=kubeclient.KUBECONFIG)


# The generated API classes are typed for model objects; the suite sends and reads plain JSON.
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def apps(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)


def batch(api: client.ApiClient) -> Any:
    return client.BatchV1Api(api)


def admission(api: client.ApiClient) -> Any:
    return client.AdmissionregistrationV1Api(api)


def rbac(api: client.ApiClient) -> Any:
    return client.RbacAuthorizationV1Api(api)


def wait_until(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll check() until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def get_pod(api: client.ApiClient, namespace: str, name: str) -> Pod:
    """The pod as plain JSON (what the controller and webhook see)."""
    resp = core(api).read_namespaced_pod(name, namespace, _preload_content=False)
    data: Pod = json.loads(resp.data)
    return data


def list_pods(api: client.ApiClient, namespace: str, selector: str) -> list[Pod]:
    resp = core(api).list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    items: list[Pod] = json.loads(resp.data)["items"]
    return items


def condition(pod: Pod, kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def namespace_story(api: client.ApiClient, namespace: str, events: int = 20) -> str:
    """Each pod's phase, why it is not scheduled (a Pending pod's PodScheduled message: "Insufficient
    cpu"...) and its containers, then the namespace's last `events` Events: for a failed wait."""
    api_core = core(api)
    lines = []
    for p in api_core.list_namespaced_pod(namespace).items:
        unscheduled = [
            f" unscheduled: {c.reason}: {c.message}"
            for c in p.status.conditions or []
            if c.type == "PodScheduled" and c.status != "True"
        ]
        containers = "; ".join(
            f"{c.name} ready={c.ready} restarts={c.restart_count}" for c in p.status.container_statuses or []
        )
        lines.append(f"pod {p.metadata.name}: {p.status.phase} {containers}{''.join(unscheduled)}")
    found = sorted(api_core.list_namespaced_event(namespace).items, key=lambda e: str(e.last_timestamp))
    lines += [f"event {e.reason} {e.involved_object.name}: {e.message}"[:300] for e in found[-events:]]
    return "\n".join(lines)


def container_status(pod: Pod, name: str) -> dict[str, Any]:
    for status in pod.get("status", {}).get("containerStatuses", []) or []:
        if status.get("name") == name:
            return dict(status)
    return {}


def container_index(pod: Pod, name: str) -> int:
    for index, container in enumerate(pod["spec"]["containers"]):
        if container["name"] == name:
            return index
    raise KeyError(name)


def container_image(pod: Pod, name: str) -> str:
    return str(pod["spec"]["containers"][container_index(pod, name)]["image"])


def pod_processes(pod_uid: str, command: str) -> list[int]:
    """Host PIDs of a pod's processes whose command line mentions `command`.

    Found by the pod UID in their cgroup path (`pod<uid>` with the cgroupfs driver, `pod<uid_>` with
    systemd's); works wherever the suite runs on the node's kernel (the local cluster, kind)."""
    marks = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}")
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroups = (proc / "cgroup").read_text()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if any(mark in cgroups for mark in marks) and any(command.encode() in arg for arg in argv):
            found.append(int(proc.name))
    return found


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None
