"""The release controller's view of the cluster: watch-backed caches of SidecarReleases, namespaces
(their labels) and injected pods (their planner facts), and which releases a change concerns.

Pods are kept as `CachedPod` (the planner's `PodFacts` plus the resourceVersion a target write pins), never
as whole documents, and pods without the injected pair are not kept at all: memory grows with the
injected pods only. A change is mapped to the releases it can affect and handed to `enqueue`: a pod's to
every release selecting it before or after the change, a namespace's or a release's to every release
(labels and priorities decide ownership among all of them).
"""

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.keys import ANNOTATION_STATUS
from controller.kube import Kube, KubeError
from controller.rollout import PodFacts, pod_facts
from releaseapi.release import InvalidReleaseError, Release, parse_release, selects
from webhook.informer import Informer, Pages, resource_version


@dataclass(frozen=True)
class CachedPod:
    """An injected pod as the planner sees it, and the resourceVersion it was seen at."""

    facts: PodFacts
    resource_version: str


@dataclass(frozen=True)
class CachedRelease:
    """A release document and its parse (None: the spec is invalid; the reconciler reports why)."""

    raw: dict[str, Any]
    parsed: Release | None


def cached_facts(raw: dict[str, Any]) -> CachedPod:
    """Any pod's planner facts and resourceVersion (the budget gate counts pods without the pair too)."""
    return CachedPod(facts=pod_facts(raw), resource_version=resource_version(raw))


def cached_pod(raw: dict[str, Any]) -> CachedPod | None:
    """The cache's projection of a pod; None for a pod without the injected pair (never upgradable)."""
    annotations = (raw.get("metadata") or {}).get("annotations") or {}
    if ANNOTATION_STATUS not in annotations:
        return None
    return cached_facts(raw)


def cached_release(raw: dict[str, Any]) -> CachedRelease:
    try:
        parsed: Release | None = parse_release(raw)
    except InvalidReleaseError:
        parsed = None
    return CachedRelease(raw=raw, parsed=parsed)


def namespace_labels(raw: dict[str, Any]) -> dict[str, str]:
    meta = raw.get("metadata") or {}
    return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def one_page(listing: Callable[[], tuple[list[dict[str, Any]], str]]) -> Callable[[], Pages]:
    """An unpaged list (items, resourceVersion) in the informer's pages shape."""

    def pages() -> Pages:
        items, version = listing()
        return [(items, version)]

    return pages


class FleetCache:
    """Three informers (releases, namespaces, pods per watched namespace or all) and the change map."""

    def __init__(
        self,
        kube: Kube,
        *,
        enqueue: Callable[[str], None],
        stop: threading.Event,
        namespaces: Sequence[str] = (),
        watch_timeout: int = 300,
    ) -> None:
        self._enqueue = enqueue
        self.stop = stop
        self._informer = functools.partial(
            Informer, stop=stop, retry_on=(KubeError,), watch_timeout=watch_timeout
        )
        self.release_cache: Informer[CachedRelease] = self._informer(
            "sidecarreleases",
            list_pages=one_page(kube.list_releases),
            watch=lambda rv, t: kube.watch_releases(resource_version=rv, timeout_seconds=t),
            transform=cached_release,
            on_change=self._release_changed,
        )
        self.namespace_cache: Informer[dict[str, str]] = self._informer(
            "namespaces",
            list_pages=one_page(kube.list_namespaces),
            watch=lambda rv, t: kube.watch_namespaces(resource_version=rv, timeout_seconds=t),
            transform=namespace_labels,
            on_change=self._namespace_changed,
        )
        scopes: list[str | None] = list(namespaces) or [None]
        self.pod_caches = [self._pod_informer(kube, ns) for ns in scopes]

    def _pod_informer(self, kube: Kube, namespace: str | None) -> Informer[CachedPod]:
        informer: Informer[CachedPod] = self._informer(
            f"pods/{namespace or 'all'}",
            list_pages=lambda: kube.pod_pages(namespace),
            watch=lambda rv, t: kube.watch_pods(namespace, resource_version=rv, timeout_seconds=t),
            transform=cached_pod,
            on_change=self._pod_changed,
        )
        return informer

    @property
    def informers(self) -> list[Informer[Any]]:
        return [self.release_cache, self.namespace_cache, *self.pod_caches]

    def start(self) -> None:
        for informer in self.informers:
            threading.Thread(target=informer.run, name=f"cache-{informer.name}", daemon=True).start()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until every cache has listed once (planning on a half-filled cache would mislead)."""
        return all(informer.synced.wait(timeout) for informer in self.informers)

    # --- reads for the reconciler ------------------------------------------------------------------

    def releases(self) -> dict[str, CachedRelease]:
        return self.release_cache.items()

    def namespaces(self) -> dict[str, dict[str, str]]:
        return self.namespace_cache.items()

    def pods(self) -> dict[str, CachedPod]:
        out: dict[str, CachedPod] = {}
        for cache in self.pod_caches:
            out.update(cache.items())
        return out

    def pod_written(self, raw: dict[str, Any]) -> None:
        """What a write returned (or a fresh read): seen at once, before its watch event."""
        namespace = (raw.get("metadata") or {}).get("namespace")
        for cache in self._caches_for(namespace):
            cache.put(raw)

    def pod_gone(self, namespace: str, name: str) -> None:
        for cache in self._caches_for(namespace):
            cache.forget(f"{namespace}/{name}")

    def _caches_for(self, namespace: str | None) -> list[Informer[CachedPod]]:
        return [c for c in self.pod_caches if c.name in (f"pods/{namespace}", "pods/all")]

    # --- change -> releases ------------------------------------------------------------------------

    def _enqueue_all(self) -> None:
        for name in self.release_cache.items():
            self._enqueue(name)

    def _release_changed(self, key: str, old: CachedRelease | None, new: CachedRelease | None) -> None:
        self._enqueue(key)  # also when deleted: its reconcile forgets its metrics
        self._enqueue_all()

    def _namespace_changed(
        self, key: str, old: Mapping[str, str] | None, new: Mapping[str, str] | None
    ) -> None:
        self._enqueue_all()

    def _pod_changed(self, key: str, old: CachedPod | None, new: CachedPod | None) -> None:
        pod = new or old
        if pod is None:
            return
        ns_labels = self.namespace_cache.get(pod.facts.namespace) or {}
        for name, release in self.release_cache.items().items():
            if release.parsed is None:
                continue
            if any(
                seen is not None and selects(release.parsed, seen.facts.labels, ns_labels)
                for seen in (old, new)
            ):
                self._enqueue(name)
