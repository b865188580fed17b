"""The gate's view of the cluster: watch-backed caches of PodDisruptionBudgets and of every pod's planner
facts in the watched namespaces, and one lock per namespace that makes an admission and the write it
allows one step.

Two workers could otherwise both see room for one more pod and both start theirs. So the reconciler holds
the namespace's lock from the gate's verdict until its write has landed and is `seen` here: kept beside
the pod cache until the cache holds that version or a newer one, so neither a late watch event nor a
relist of a list taken before the write can hide it. Only the leader writes, so a lock in the process is
enough. Pods are kept as `PodFacts` (labels, readiness, the upgrade record), all of them: a budget counts
pods without the sidecar too.
"""

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from controller import budgetgate
from controller.disruption import Budget, Counts, InvalidBudgetError, disrupted, parse_budget
from controller.fleetcache import CachedPod, cached_facts, one_page
from controller.kube import Kube, KubeError
from controller.observed import BudgetView
from controller.rollout import PodFacts, pod_facts
from webhook import logs
from webhook.informer import Informer, ListFn, WatchFn, not_older, resource_version

T = TypeVar("T")
NOT_LISTED = (
    "PodDisruptionBudgets to be listed (none listed yet: the controller needs list and watch on "
    "policy/poddisruptionbudgets and pods)"
)


def cached_budget(raw: dict[str, Any]) -> Budget | None:
    """A PDB's parse; one this code cannot read is logged and left out (as the CLI does)."""
    try:
        return parse_budget(raw)
    except InvalidBudgetError as exc:
        name = (raw.get("metadata") or {}).get("name")
        logs.event("pdb_unreadable", level=logging.WARNING, pdb=name, error=str(exc)[:300])
        return None


def _ignore(key: str, old: object, new: object) -> None:
    """Nothing to enqueue: a held upgrade looks again every poll interval."""


class BudgetCache:
    """PDB and pod informers per watched namespace (or all); `admit` is the gate over them."""

    def __init__(
        self, kube: Kube, *, namespaces: Sequence[str] = (), watch_timeout: int = 300, sync_wait: float = 5.0
    ) -> None:
        self.stop = threading.Event()
        self.sync_wait = sync_wait
        self.watch_timeout = watch_timeout
        scopes: list[str | None] = list(namespaces) or [None]
        self.budget_caches = [
            self._informer(
                f"pdbs/{ns or 'all'}",
                one_page(functools.partial(kube.list_pdbs, ns)),
                functools.partial(self._watch, kube.watch_pdbs, ns),
                cached_budget,
            )
            for ns in scopes
        ]
        self.pod_caches: list[Informer[CachedPod]] = [
            self._informer(
                f"budget-pods/{ns or 'all'}",  # the release loop's cache is pods/...
                functools.partial(kube.pod_pages, ns),
                functools.partial(self._watch, kube.watch_pods, ns),
                cached_facts,
            )
            for ns in scopes
        ]
        self._written: dict[str, CachedPod] = {}  # pod key -> this controller's last write of it
        self._written_lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _informer(
        self, name: str, pages: ListFn, watch: WatchFn, transform: Callable[[dict[str, Any]], T | None]
    ) -> Informer[T]:
        return Informer(
            name,
            list_pages=pages,
            watch=watch,
            transform=transform,
            on_change=_ignore,
            stop=self.stop,
            retry_on=(KubeError,),
            watch_timeout=self.watch_timeout,
        )

    @staticmethod
    def _watch(func: Callable[..., Iterator[dict[str, Any]]], ns: str | None, rv: str, timeout: int) -> Any:
        return func(ns, resource_version=rv, timeout_seconds=timeout)

    @property
    def informers(self) -> list[Informer[Any]]:
        return [*self.budget_caches, *self.pod_caches]

    def start(self) -> None:
        for cache in self.informers:
            threading.Thread(target=cache.run, name=f"cache-{cache.name}", daemon=True).start()

    def close(self) -> None:
        self.stop.set()

    def synced(self, timeout: float | None = 0) -> bool:
        return all(cache.synced.wait(timeout) for cache in self.informers)

    # --- the gate ----------------------------------------------------------------------------------

    @contextmanager
    def holding(self, namespace: str) -> Iterator[None]:
        """The namespace's admission lock, held from a verdict until its write is `seen`."""
        with self._locks_lock:
            lock = self._locks.setdefault(namespace, threading.Lock())
        with lock:
            yield

    def admit(self, raw_pod: dict[str, Any]) -> BudgetView:
        """The gate's verdict on starting the upgrade of a pod as just read (controller.budgetgate)."""
        return self.admit_facts(pod_facts(raw_pod), counts=disrupted)

    def admit_facts(self, pod: PodFacts, *, counts: Counts) -> BudgetView:
        """The gate's verdict over the cached budgets and pods of the pod's namespace; refused, naming
        why, until the caches have listed once."""
        if not self.synced(self.sync_wait):
            return BudgetView(admitted=False, message=NOT_LISTED)
        return budgetgate.admit(pod, self.budgets(pod.namespace), self.pods(pod.namespace), counts=counts)

    def budgets(self, namespace: str) -> list[Budget]:
        return [b for cache in self.budget_caches for b in cache.items().values() if b.namespace == namespace]

    def pods(self, namespace: str) -> list[PodFacts]:
        """The namespace's pods as cached, each replaced by the controller's own later write if the
        cache has not caught up with it yet."""
        cached = {
            key: pod
            for cache in self.pod_caches
            for key, pod in cache.items().items()
            if pod.facts.namespace == namespace
        }
        with self._written_lock:
            for key, mine in list(self._written.items()):
                have = cached.get(key)
                if mine.facts.namespace != namespace:
                    continue
                if have is None or not_older(have.resource_version, mine.resource_version):
                    del self._written[key]  # gone, or the cache has caught up
                else:
                    cached[key] = mine
        return [pod.facts for pod in cached.values()]

    def seen(self, raw_pod: dict[str, Any]) -> None:
        """What a write returned (or a fresh read): counted at once, before its watch event arrives, and
        also while a relist puts back a list taken before the write."""
        mine = CachedPod(facts=pod_facts(raw_pod), resource_version=resource_version(raw_pod))
        with self._written_lock:
            old = self._written.get(mine.facts.key)
            if old is None or not_older(mine.resource_version, old.resource_version):
                self._written[mine.facts.key] = mine
