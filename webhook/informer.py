"""A watch-backed cache of one kind of object (client-go's informer, reduced to what the release
controller and the webhook's release cache need): list, then watch from the list's resourceVersion (the
local etcd 3.4 never reports the revision a watch without one would wait for); relist on 410 or a broken
watch. It lives in webhook/ because webhook/ must not import controller/, while controller/ may import
webhook/ (as webhook.kubeclient).

Each object is kept as `transform(raw)` (a projection, so the cache of pods stays small), or dropped when
that is None. `on_change(key, old, new)` runs on the watch thread for every change (None: absent), so it
must be quick (the release controller only queues keys). List and watch raise `retry_on` errors when
the API call fails: logged, and tried again after a doubling delay. Writers may `put` what a write
returned, so the next decision sees their own write before its watch event arrives; an older event never
overwrites a newer object (resourceVersions compare as integers when both are, which etcd's are).
"""

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from webhook import logs

Pages = Iterable[tuple[list[dict[str, Any]], str | None]]  # Kube.pod_pages' shape: the last carries the RV
ListFn = Callable[[], Pages]
WatchFn = Callable[[str, int], Iterator[dict[str, Any]]]  # (resourceVersion, timeout seconds) -> events
T = TypeVar("T")
MAX_BACKOFF = 60.0  # seconds between attempts after repeated list/watch errors


def object_key(raw: Mapping[str, Any]) -> str:
    """namespace/name, or name for a cluster-scoped object."""
    meta = raw.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def resource_version(raw: Mapping[str, Any]) -> str:
    return str((raw.get("metadata") or {}).get("resourceVersion", ""))


def not_older(new: str, old: str | None) -> bool:
    """Whether an object at `new` may replace one at `old` (unknown or non-numeric: yes)."""
    if old is None or not (new.isdigit() and old.isdigit()):
        return True
    return int(new) >= int(old)


class Informer(Generic[T]):
    """One list+watch loop filling a thread-safe map key -> T; `synced` is set after the first list."""

    def __init__(
        self,
        name: str,
        *,
        list_pages: ListFn,
        watch: WatchFn,
        transform: Callable[[dict[str, Any]], T | None],
        on_change: Callable[[str, T | None, T | None], None],
        stop: threading.Event,
        retry_on: tuple[type[Exception], ...],
        watch_timeout: int = 300,
        error_backoff: float = 2.0,
    ) -> None:
        self.name = name
        self._list_pages = list_pages
        self._watch_fn = watch
        self._transform = transform
        self._on_change = on_change
        self.stop = stop
        self.retry_on = retry_on
        self.watch_timeout = watch_timeout
        self.error_backoff = error_backoff
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._items: dict[str, T] = {}
        self._versions: dict[str, str] = {}

    # --- reads -------------------------------------------------------------------------------------

    def get(self, key: str) -> T | None:
        with self._lock:
            return self._items.get(key)

    def items(self) -> dict[str, T]:
        """A snapshot (a shallow copy: the values are immutable projections)."""
        with self._lock:
            return dict(self._items)

    # --- writes ------------------------------------------------------------------------------------

    def put(self, raw: dict[str, Any]) -> None:
        """Store what a write returned (or a fresh read), unless the cache already holds a newer one."""
        self._store(object_key(raw), raw)

    def forget(self, key: str) -> None:
        """Drop a key the API server no longer has (a 404 on a write)."""
        with self._lock:
            old = self._items.pop(key, None)
            self._versions.pop(key, None)
        if old is not None:
            self._on_change(key, old, None)

    def _store(self, key: str, raw: dict[str, Any]) -> None:
        value = self._transform(raw)
        version = resource_version(raw)
        with self._lock:
            if not not_older(version, self._versions.get(key)):
                return
            old = self._items.get(key)
            if value is None:
                self._items.pop(key, None)
                self._versions.pop(key, None)
            else:
                self._items[key] = value
                self._versions[key] = version
        if old != value:
            self._on_change(key, old, value)

    # --- the loop ----------------------------------------------------------------------------------

    def run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                version = self._relist()
                failures = 0
                self.synced.set()
                self._follow(version)
            except self.retry_on as exc:
                # Doubling up to a minute: a missing CRD or RBAC is not fixed by asking every 2 s.
                delay = min(MAX_BACKOFF, self.error_backoff * 2**failures)
                failures += 1
                logs.event(
                    "watch_error",
                    level=logging.WARNING,
                    cache=self.name,
                    retry_in=delay,
                    error=str(exc)[:300],
                )
                self.stop.wait(delay)

    def _relist(self) -> str:
        """Replace the cache with a fresh list; objects gone meanwhile are reported deleted."""
        seen: set[str] = set()
        version = ""
        for page, last in self._list_pages():
            for raw in page:
                key = object_key(raw)
                seen.add(key)
                with self._lock:  # a list is a consistent snapshot: it may replace anything
                    self._versions.pop(key, None)
                self._store(key, raw)
            version = last or version
        with self._lock:
            gone = [k for k in self._items if k not in seen]
        for key in gone:
            self.forget(key)
        logs.event("cache_listed", cache=self.name, objects=len(seen), kept=len(self._items))
        return version

    def _follow(self, version: str) -> None:
        """Apply watch events until the watch expires (410: relist) or the controller stops."""
        while not self.stop.is_set():
            for event in self._watch_fn(version, self.watch_timeout):
                kind, raw = str(event.get("type")), event.get("object") or {}
                if kind == "ERROR":
                    logs.event("watch_expired", cache=self.name, code=raw.get("code"))
                    return
                version = resource_version(raw) or version
                if kind in ("ADDED", "MODIFIED"):
                    self._store(object_key(raw), raw)
                elif kind == "DELETED":
                    self.forget(object_key(raw))
                if self.stop.is_set():
                    return
