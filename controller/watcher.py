"""List-then-watch pods as raw JSON and put the interesting ones on the work queue.

No pod cache is kept: the reconciler re-reads the pod it works on, so memory does not grow with the
number of watched pods beyond one decoded event at a time.
"""

import logging
import threading
from collections.abc import Mapping
from typing import Any

from controller.errors import KubeError
from controller.keys import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.workqueue import WorkQueue
from webhook import logs


def worth_reconciling(pod: Mapping[str, Any]) -> bool:
    """Injected pods that name a target or carry an upgrade record; everything else is skipped."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if ANNOTATION_STATUS not in annotations:
        return False
    return ANNOTATION_TARGET_IMAGE in annotations or ANNOTATION_UPGRADE in annotations


def pod_key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


class PodWatcher:
    """One list+watch loop over a namespace (or all namespaces when `namespace` is None)."""

    def __init__(
        self,
        kube: Kube,
        queue: WorkQueue,
        *,
        namespace: str | None,
        metrics: ControllerMetrics,
        stop: threading.Event,
        watch_timeout: int = 120,
        error_backoff: float = 2.0,
    ) -> None:
        self.kube = kube
        self.queue = queue
        self.namespace = namespace
        self.metrics = metrics
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.error_backoff = error_backoff
        self.synced = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                resource_version = self._list()
                self.synced.set()
                self._watch(resource_version)
            except KubeError as exc:
                logs.event(
                    "watch_error", level=logging.WARNING, namespace=self.namespace, error=str(exc)[:300]
                )
                self.stop.wait(self.error_backoff)

    def _list(self) -> str:
        """Queue every pod worth a look; pages are dropped as soon as they are scanned."""
        seen = queued = 0
        resource_version = ""
        for pods, last in self.kube.pod_pages(self.namespace):
            seen += len(pods)
            for pod in pods:
                if worth_reconciling(pod):
                    self.queue.add(pod_key(pod))
                    queued += 1
            resource_version = last or resource_version
        logs.event("pods_listed", namespace=self.namespace, pods=seen, queued=queued)
        return resource_version

    def _watch(self, resource_version: str) -> None:
        """Follow changes until the watch expires (410: relist) or the controller stops."""
        while not self.stop.is_set():
            events = self.kube.watch_pods(
                self.namespace, resource_version=resource_version, timeout_seconds=self.watch_timeout
            )
            for event in events:
                kind = str(event.get("type"))
                pod = event.get("object") or {}
                self.metrics.watch_events.labels(type=kind).inc()
                if kind == "ERROR":
                    logs.event("watch_expired", namespace=self.namespace, code=pod.get("code"))
                    return
                resource_version = str((pod.get("metadata") or {}).get("resourceVersion", resource_version))
                if kind in ("ADDED", "MODIFIED") and worth_reconciling(pod):
                    self.queue.add(pod_key(pod))
                if self.stop.is_set():
                    return
