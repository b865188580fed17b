"""Which releases a change concerns, and what the caches keep. The caches are filled by hand here (`put`,
as a write or a watch event would); nothing is listed or watched, so no API server is reached."""

import threading
from typing import Any

from kubernetes import client

from controller.fleetcache import FleetCache, cached_pod, cached_release
from controller.kube import Kube
from releaseapi.release import API_VERSION, KIND
from tests.unit.controller.podfixtures import NEW, raw_pod


def release(name: str, *, rv: int = 1, **spec: Any) -> dict[str, Any]:
    body = {"selector": {"matchLabels": {"app": "web"}}, "image": NEW, **spec}
    meta = {"name": name, "resourceVersion": str(rv), "generation": 1}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": body}


def namespace(name: str, rv: int = 1, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": str(rv), "labels": labels}}


def pod(name: str, rv: int, *, injected: bool = True, **labels: str) -> dict[str, Any]:
    raw = raw_pod(target=None) if injected else raw_pod(status=None, target=None)
    raw["metadata"].update(name=name, resourceVersion=str(rv), labels=labels)
    return raw


def fleet() -> tuple[FleetCache, list[str]]:
    queued: list[str] = []
    cache = FleetCache(Kube(client.ApiClient()), enqueue=queued.append, stop=threading.Event())
    return cache, queued


def test_a_pod_change_queues_the_releases_that_select_it_before_or_after() -> None:
    cache, queued = fleet()
    shop: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"team": "shop"}}}
    cache.release_cache.put(release("web", **shop))
    cache.release_cache.put(release("canary", selector={"matchLabels": {"track": "canary"}}))
    cache.release_cache.put(release("broken", image=""))  # invalid: kept, selects nothing
    cache.namespace_cache.put(namespace("shop", team="shop"))
    queued.clear()
    (pods,) = cache.pod_caches
    pods.put(pod("web-1", 10, app="web"))
    assert queued == ["web"]
    queued.clear()
    pods.put(pod("web-1", 11, app="web", track="canary"))  # now both select it
    assert sorted(queued) == ["canary", "web"]
    queued.clear()
    pods.put(pod("web-1", 12, track="canary"))  # web selected it before the change: told too
    assert sorted(queued) == ["canary", "web"]
    queued.clear()
    pods.put(pod("web-1", 12, track="canary"))  # the same again: no change, nothing queued
    assert queued == []
    pods.forget("shop/web-1")
    assert queued == ["canary"]


def test_namespace_and_release_changes_queue_every_release() -> None:
    cache, queued = fleet()
    cache.release_cache.put(release("a"))
    cache.release_cache.put(release("b"))
    queued.clear()
    cache.namespace_cache.put(namespace("shop", team="shop"))
    assert sorted(queued) == ["a", "b"]
    queued.clear()
    cache.release_cache.put(release("b", rv=2, priority=5))
    assert sorted(queued) == ["a", "b", "b"]  # b itself, then all (the queue dedupes)


def test_only_injected_pods_are_kept_and_only_as_facts() -> None:
    cache, _ = fleet()
    (pods,) = cache.pod_caches
    pods.put(pod("plain", 5, injected=False, app="web"))
    pods.put(pod("web-1", 6, app="web"))
    assert list(cache.pods()) == ["shop/web-1"]
    kept = cache.pods()["shop/web-1"]
    assert (kept.facts.labels, kept.resource_version) == ({"app": "web"}, "6")
    assert cached_pod(pod("plain", 5, injected=False)) is None
    assert cached_release(release("broken", image="")).parsed is None
    cache.pod_written(pod("web-1", 9, app="web", track="x"))
    assert cache.pods()["shop/web-1"].resource_version == "9"
    cache.pod_gone("shop", "web-1")
    assert cache.pods() == {}
