"""Thin helpers over the Kubernetes API for the e2e suite: clients, waits, pod facts."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client, config

T = TypeVar("T")
Pod = dict[str, Any]


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient for KUBECONFIG (the suite runs on any cluster it names)."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if not path:
        raise RuntimeError("KUBECONFIG is not set: the e2e suite needs a cluster (make cluster-up)")
    api: client.ApiClient = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
    return api


# The generated API classes are typed for model objects; the suite sends and reads plain JSON.
def core(api: client.ApiClient) -> Any:
    return client.CoreV1Api(api)


def apps(api: client.ApiClient) -> Any:
    return client.AppsV1Api(api)


def admission(api: client.ApiClient) -> Any:
    return client.AdmissionregistrationV1Api(api)


def rbac(api: client.ApiClient) -> Any:
    return client.RbacAuthorizationV1Api(api)


def token_client(base: client.ApiClient, token: str) -> client.ApiClient:
    """A client for the same server and CA that authenticates with a bearer token (a ServiceAccount)."""
    cfg = client.Configuration()
    src = base.configuration
    cfg.host = src.host
    cfg.ssl_ca_cert = src.ssl_ca_cert
    cfg.verify_ssl = True
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


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


@dataclass
class ReadyWatch:
    """Samples a pod's Ready condition from the API; NotReady time is summed between samples."""

    api: client.ApiClient
    namespace: str
    name: str
    interval: float = 0.1
    not_ready_seconds: float = 0.0
    samples: int = 0
    errors: int = 0
    transitions: int = 0
    _stop: bool = False

    def run(self) -> None:
        last = time.monotonic()
        previous = True
        while not self._stop:
            try:
                ready = condition(get_pod(self.api, self.namespace, self.name), "Ready")
            except Exception:  # an API hiccup is not a NotReady pod; counted so a broken watch shows
                self.errors += 1
                time.sleep(self.interval)
                continue
            now = time.monotonic()
            if not ready:
                self.not_ready_seconds += now - last
            if ready != previous:
                self.transitions += 1
            previous, last = ready, now
            self.samples += 1
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop = True
