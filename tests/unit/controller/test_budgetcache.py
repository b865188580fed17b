"""The gate's caches filled by hand (`put`, as a list or a watch event would; nothing is listed or watched,
so no API server is reached): the controller's own writes count at once and survive a relist of an older
list; the gate refuses until the caches have listed."""

import threading
from typing import Any

from kubernetes import client

from controller.budgetcache import NOT_LISTED, BudgetCache
from controller.kube import Kube
from controller.record import Phase
from tests.unit.controller.podfixtures import raw_pod, upgrade_record


def pod(name: str, rv: int, phase: Phase | None = None, *, ready: bool = True) -> dict[str, Any]:
    record = upgrade_record(phase=phase) if phase is not None else None
    raw = raw_pod(record=record, ready=ready)
    raw["metadata"].update(name=name, resourceVersion=str(rv), labels={"app": "web"})
    return raw


PDB = {
    "metadata": {"namespace": "shop", "name": "web-pdb", "resourceVersion": "5", "generation": 1},
    "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
}


def filled() -> BudgetCache:
    cache = BudgetCache(Kube(client.ApiClient()), namespaces=["shop"], sync_wait=0)
    (budgets,), (pods,) = cache.budget_caches, cache.pod_caches
    budgets.put(PDB)
    for name in ("web-0", "web-1", "web-2"):
        pods.put(pod(name, 10, Phase.PENDING))
    for informer in cache.informers:
        informer.synced.set()
    return cache


def phases(cache: BudgetCache) -> dict[str, Phase | None]:
    return {p.name: p.record.phase if p.record else None for p in cache.pods("shop")}


def test_an_own_write_counts_at_once_and_survives_a_relist_of_an_older_list() -> None:
    cache = filled()
    (pods,) = cache.pod_caches
    assert cache.admit(pod("web-1", 10, Phase.PENDING)).admitted
    cache.seen(pod("web-0", 11, Phase.TAKING_OVER))  # the admitted start, as its write returned it
    assert phases(cache)["web-0"] is Phase.TAKING_OVER
    refused = cache.admit(pod("web-1", 10, Phase.PENDING))
    assert not refused.admitted and "(web-0 upgrading)" in refused.message
    # A relist that took its list before the write puts the Pending version back into the cache.
    pods.forget("shop/web-0")
    pods.put(pod("web-0", 10, Phase.PENDING))
    assert phases(cache)["web-0"] is Phase.TAKING_OVER, "the write still counts"
    assert not cache.admit(pod("web-2", 10, Phase.PENDING)).admitted
    # The cache catches up (the watch event of a later write): the cache's view wins again.
    pods.put(pod("web-0", 12, Phase.COMPLETED))
    assert phases(cache)["web-0"] is Phase.COMPLETED
    assert cache.admit(pod("web-1", 10, Phase.PENDING)).admitted


def test_nothing_is_admitted_before_the_caches_have_listed() -> None:
    cache = BudgetCache(Kube(client.ApiClient()), namespaces=["shop"], sync_wait=0)
    verdict = cache.admit(pod("web-0", 10, Phase.PENDING))
    assert not verdict.admitted and verdict.message == NOT_LISTED
    assert NOT_LISTED.startswith("PodDisruptionBudget"), "steps recognise a budget wait by this prefix"


def test_the_admission_lock_is_per_namespace() -> None:
    cache = filled()
    got: list[str] = []

    def take(namespace: str) -> None:
        with cache.holding(namespace):
            got.append(namespace)

    with cache.holding("shop"):
        other = threading.Thread(target=take, args=("other",))
        other.start()
        other.join(timeout=5)
        same = threading.Thread(target=take, args=("shop",))
        same.start()
        same.join(timeout=0.3)
        assert got == ["other"] and same.is_alive(), "only the same namespace waits"
    same.join(timeout=5)
    assert got == ["other", "shop"]
