"""The controller's only door to the API server: raw JSON in and out, errors sorted into kinds.

No client models are built (`_preload_content=False`): a pod stays a dict, which is what the pure
core reads and what keeps memory flat when thousands of pods are watched.
"""

import json
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
from kubernetes import client

from controller import release
from controller.errors import ConflictError, KubeError, NotFoundError, TransientError
from webhook.kubeclient import load_api_client

__all__ = [  # the error kinds and the loader are re-exported: callers need only this module
    "ConflictError",
    "Kube",
    "KubeError",
    "NotFoundError",
    "TransientError",
    "load_api_client",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def _patch_not_applicable(body: str) -> bool:
    """A 422 for a JSON patch that did not apply (a failed `test` op, a path gone): the API server says
    only "the server rejected our request" with empty details, unlike a validation error's causes."""
    try:
        status = json.loads(body)
    except ValueError:
        return False
    return isinstance(status, dict) and status.get("reason") == "Invalid" and not status.get("details")


def _classify(exc: Exception) -> KubeError:
    if isinstance(exc, client.ApiException):
        status = int(exc.status or 0)
        body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
        if status == 409 or (status == 422 and _patch_not_applicable(body)):
            return ConflictError(status, body)
        if status == 404:
            return NotFoundError(status, body)
        if status == 429 or status >= 500 or status == 0:
            return TransientError(status, body)
        return KubeError(status, body)
    return TransientError(0, f"{type(exc).__name__}: {exc}")


def _raw(response: Any) -> Any:
    data = response.data
    return json.loads(data) if data else None


class Kube:
    """Pods, Nodes, Namespaces, Events, Leases, PodDisruptionBudgets and SidecarReleases as raw JSON;
    `component` names the writer of the Events it posts."""

    def __init__(self, api_client: client.ApiClient, *, component: str = "hotupgrade-controller") -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.policy = client.PolicyV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.component = component

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return _raw(func(*args, _preload_content=False, **kwargs))
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _classify(exc) from exc

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            pod: dict[str, Any] = self._call(self.core.read_namespaced_pod, name, namespace)
        except NotFoundError:
            return None
        return pod

    def pod_pages(
        self, namespace: str | None, *, label_selector: str | None = None, page: int = 500
    ) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
        """Pods a page at a time (memory stays at one page); the last page carries the list's
        resourceVersion to watch from, the others None."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": page}
            if token:
                kwargs["_continue"] = token
            if label_selector:
                kwargs["label_selector"] = label_selector
            if namespace:
                body = self._call(self.core.list_namespaced_pod, namespace, **kwargs)
            else:
                body = self._call(self.core.list_pod_for_all_namespaces, **kwargs)
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            yield (body.get("items") or []), (None if token else str(meta.get("resourceVersion", "")))
            if not token:
                return

    def list_pods(
        self, namespace: str | None, *, label_selector: str | None = None, page: int = 500
    ) -> tuple[list[dict[str, Any]], str]:
        """All pods, and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        version = ""
        for chunk, last in self.pod_pages(namespace, label_selector=label_selector, page=page):
            items.extend(chunk)
            version = last or version
        return items, version

    def list_pod_disruption_budgets(self, namespace: str) -> list[dict[str, Any]]:
        """The namespace's policy/v1 PodDisruptionBudgets (the `hotupgrade rollout` budget check)."""
        items, _ = self.list_pdbs(namespace)
        return items

    def list_pdbs(self, namespace: str | None) -> tuple[list[dict[str, Any]], str]:
        """policy/v1 PodDisruptionBudgets of a namespace (None: all), and the list's resourceVersion."""
        if namespace:
            body = self._call(self.policy.list_namespaced_pod_disruption_budget, namespace)
        else:
            body = self._call(self.policy.list_pod_disruption_budget_for_all_namespaces)
        return (body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion", ""))

    def watch_pdbs(
        self, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """PDB watch events from `resource_version`, a list's (without one, Kubernetes 1.34 waits for its
        cache to reach etcd's revision, which etcd before 3.4.31 may never report: a 504)."""
        if namespace:
            return self._watch(
                self.policy.list_namespaced_pod_disruption_budget,
                namespace,
                rv=resource_version,
                timeout=timeout_seconds,
            )
        return self._watch(
            self.policy.list_pod_disruption_budget_for_all_namespaces,
            rv=resource_version,
            timeout=timeout_seconds,
        )

    def watch_pods(
        self, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events as raw dicts (type, object); ends when the server closes the watch."""
        if namespace:
            return self._watch(
                self.core.list_namespaced_pod, namespace, rv=resource_version, timeout=timeout_seconds
            )
        return self._watch(
            self.core.list_pod_for_all_namespaces, rv=resource_version, timeout=timeout_seconds
        )

    def _watch(self, func: Any, *args: Any, rv: str, timeout: int) -> Iterator[dict[str, Any]]:
        """Open a watch with `func(*args)` (a list call) and yield its events, one JSON line each."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": rv,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout,
            "_preload_content": False,
        }
        response: Any
        try:
            response = func(*args, **kwargs)
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _classify(exc) from exc
        yield from self._events(response)

    @staticmethod
    def _events(response: Any) -> Iterator[dict[str, Any]]:
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=False):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _classify(exc) from exc
        finally:
            response.release_conn()

    def patch_pod(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        pod: dict[str, Any] = self._call(
            self.core.patch_namespaced_pod, name, namespace, ops, _content_type=JSON_PATCH
        )
        return pod

    def merge_patch_pod(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        pod: dict[str, Any] = self._call(
            self.core.patch_namespaced_pod, name, namespace, dict(patch), _content_type=MERGE_PATCH
        )
        return pod

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        pod: dict[str, Any] = self._call(self.core.create_namespaced_pod, namespace, dict(body))
        return pod

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self._call(self.core.delete_namespaced_pod, name, namespace, grace_period_seconds=0)
        except NotFoundError:
            return

    def get_node(self, name: str) -> dict[str, Any] | None:
        """The Node (its kubelet's version is all the controller reads); None when there is none."""
        try:
            node: dict[str, Any] = self._call(self.core.read_node, name)
        except NotFoundError:
            return None
        return node

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a core/v1 Event (controller.events builds it); a taken name is ConflictError."""
        event: dict[str, Any] = self._call(self.core.create_namespaced_event, namespace, dict(body))
        return event

    def list_events(self, namespace: str, pod_name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.name={pod_name},involvedObject.kind=Pod"
        body = self._call(self.core.list_namespaced_event, namespace, field_selector=selector)
        items: list[dict[str, Any]] = body.get("items") or []
        return items

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            lease: dict[str, Any] = self._call(self.coordination.read_namespaced_lease, name, namespace)
        except NotFoundError:
            return None
        return lease

    def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        lease: dict[str, Any] = self._call(self.coordination.create_namespaced_lease, namespace, dict(body))
        return lease

    def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the resourceVersion in `body`: 409 if someone else wrote the lease since."""
        lease: dict[str, Any] = self._call(
            self.coordination.replace_namespaced_lease, name, namespace, dict(body)
        )
        return lease

    # --- namespaces (their labels, for release namespaceSelectors) --------------------------------------

    def list_namespaces(self) -> tuple[list[dict[str, Any]], str]:
        """All namespaces, and the list's resourceVersion."""
        body = self._call(self.core.list_namespace)
        return (body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion", ""))

    def watch_namespaces(self, *, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        return self._watch(self.core.list_namespace, rv=resource_version, timeout=timeout_seconds)

    # --- SidecarReleases (cluster-scoped custom objects, controller.release) ---------------------------

    def _release_args(self) -> tuple[str, str, str]:
        return (release.GROUP, release.VERSION, release.PLURAL)

    def list_releases(self) -> tuple[list[dict[str, Any]], str]:
        """All SidecarReleases, and the list's resourceVersion (404 NotFoundError: no CRD)."""
        body = self._call(self.custom.list_cluster_custom_object, *self._release_args())
        return (body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion", ""))

    def watch_releases(self, *, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        return self._watch(
            self.custom.list_cluster_custom_object,
            *self._release_args(),
            rv=resource_version,
            timeout=timeout_seconds,
        )

    def get_release(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(
                self.custom.get_cluster_custom_object, *self._release_args(), name
            )
        except NotFoundError:
            return None
        return found

    def replace_release_status(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the status subresource; `body` carries the resourceVersion read: 409 if it moved since."""
        written: dict[str, Any] = self._call(
            self.custom.replace_cluster_custom_object_status, *self._release_args(), name, dict(body)
        )
        return written

    def create_release(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a SidecarRelease (`hotupgrade rollout`); a taken name is ConflictError (AlreadyExists)."""
        created: dict[str, Any] = self._call(
            self.custom.create_cluster_custom_object, *self._release_args(), dict(body)
        )
        return created

    def patch_release(self, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON-patch a SidecarRelease's spec (the CLI's edits, pinned to a resourceVersion: 409 if moved)."""
        patched: dict[str, Any] = self._call(
            self.custom.patch_cluster_custom_object,
            *self._release_args(),
            name,
            ops,
            _content_type=JSON_PATCH,
        )
        return patched
