"""The controller's only door to the API server: raw JSON in and out, errors sorted into kinds.

No client models are built (`_preload_content=False`): a pod stays a dict, which is what the pure
core reads and what keeps memory flat when thousands of pods are watched.
"""

import json
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config

from controller.actions import Event

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 for a connection failure)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ConflictError(KubeError):
    """The pod changed since we read it (409), or a `test` op failed (422): re-read and decide again."""


class TransientError(KubeError):
    """Worth retrying as is: 429, 5xx, connection errors."""


class NotFoundError(KubeError):
    """404."""


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


def load_api_client(kubeconfig: str | None) -> client.ApiClient:
    """An ApiClient from a kubeconfig file, or the in-cluster service account when None."""
    if kubeconfig:
        api: client.ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        return api
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


class Kube:
    """Pods, Events and Leases as raw JSON."""

    def __init__(self, api_client: client.ApiClient, *, component: str = "hotupgrade-controller") -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
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

    def watch_pods(
        self, namespace: str | None, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[dict[str, Any]]:
        """Watch events as raw dicts (type, object); ends when the server closes the watch."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": timeout_seconds,
            "_preload_content": False,
        }
        response: Any
        try:
            if namespace:
                response = self.core.list_namespaced_pod(namespace, **kwargs)
            else:
                response = self.core.list_pod_for_all_namespaces(**kwargs)
        except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise _classify(exc) from exc
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

    def record_event(
        self,
        pod: Mapping[str, Any],
        event: Event,
        *,
        now: datetime | None = None,
        name: str | None = None,
    ) -> None:
        """A core/v1 Event on the pod (what `kubectl describe pod` shows). With a fixed `name`, posting
        the same Event twice raises ConflictError (409 AlreadyExists) instead of showing it twice."""
        meta = pod.get("metadata") or {}
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name or f"{meta.get('name')}.{uuid.uuid4().hex[:12]}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": self.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": self.component,
        }
        self._call(self.core.create_namespaced_event, meta.get("namespace"), body)

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
