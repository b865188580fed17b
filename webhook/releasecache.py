"""`hotupgrade-webhook releases`: the webhook's watch-backed cache of SidecarReleases and namespace labels.

One process per webhook pod (the chart's `releases` container), not a thread per gunicorn worker: the
server container stays without an API token (it faces the network; the ServiceAccount can also rewrite
the webhook's TLS Secret in self-signed mode), and a replica holds one pair of watches however many
workers it runs. Each cache lists, then watches from the list's resourceVersion (webhook.informer), and
after both have listed every change rewrites one snapshot file atomically (webhook.releaseimage renders
it); the server's workers stat it per admission (webhook.release_source). The first write is the sync:
until it exists the server is not ready.

Only what injection needs is kept: a release's metadata and spec (not its status, which the controller
rewrites on every reconcile and which would otherwise rewrite the file), a namespace's labels.
"""

import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.config import ConfigException
from kubernetes.watch.watch import iter_resp_lines

from releaseapi.release import GROUP, PLURAL, VERSION
from webhook import logs
from webhook.config_source import write_atomically
from webhook.informer import Informer, Pages
from webhook.kubeclient import IN_CLUSTER_THEN_KUBECONFIG, load_api_client
from webhook.releaseimage import render_snapshot

API_ERRORS = (client.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class CacheAPIError(Exception):
    """A list or watch call failed (the informer logs it and tries again)."""


def slim_release(raw: dict[str, Any]) -> dict[str, Any]:
    """A release as the snapshot keeps it: no status, no managedFields (a status write changes nothing)."""
    meta = raw.get("metadata") or {}
    return {
        "apiVersion": raw.get("apiVersion"),
        "kind": raw.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "generation", "uid") if k in meta},
        "spec": raw.get("spec"),
    }


def namespace_labels(raw: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((raw.get("metadata") or {}).get("labels") or {}).items()}


def _list(call: Callable[..., Any], *args: Any) -> Pages:
    """One unpaged list as raw JSON: (items, resourceVersion)."""
    try:
        response = call(*args, _preload_content=False)
        body = json.loads(response.data)
    except API_ERRORS as exc:
        raise CacheAPIError(f"list {call.__name__}: {exc}") from exc
    return [(body.get("items") or [], str((body.get("metadata") or {}).get("resourceVersion", "")))]


def _watch(call: Callable[..., Any], *args: Any, rv: str, timeout: int) -> Iterator[dict[str, Any]]:
    """Watch events as raw JSON from `rv` (a list's: the local etcd 3.4 needs one) until the server ends
    the watch."""
    try:
        response = call(
            *args,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if line.strip():
                    yield json.loads(line)
        finally:
            response.release_conn()
    except API_ERRORS as exc:
        raise CacheAPIError(f"watch {call.__name__}: {exc}") from exc


class ReleaseCache:
    """Two informers (releases, namespaces) and the snapshot file they keep current."""

    def __init__(
        self,
        api: client.ApiClient,
        out: Path,
        *,
        stop: threading.Event,
        watch_timeout: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.out = out
        self.stop = stop
        self._clock = clock
        self._lock = threading.Lock()
        self._events = 0
        self._synced: float | None = None
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        scope = (GROUP, VERSION, PLURAL)
        self.releases: Informer[dict[str, Any]] = Informer(
            "sidecarreleases",
            list_pages=lambda: _list(custom.list_cluster_custom_object, *scope),
            watch=lambda rv, t: _watch(custom.list_cluster_custom_object, *scope, rv=rv, timeout=t),
            transform=slim_release,
            on_change=functools.partial(self._changed, "sidecarreleases"),
            stop=stop,
            retry_on=(CacheAPIError,),
            watch_timeout=watch_timeout,
        )
        self.namespaces: Informer[dict[str, str]] = Informer(
            "namespaces",
            list_pages=lambda: _list(core.list_namespace),
            watch=lambda rv, t: _watch(core.list_namespace, rv=rv, timeout=t),
            transform=namespace_labels,
            on_change=functools.partial(self._changed, "namespaces"),
            stop=stop,
            retry_on=(CacheAPIError,),
            watch_timeout=watch_timeout,
        )

    def _changed(self, cache: str, key: str, old: object, new: object) -> None:
        with self._lock:
            self._events += 1
            if self._synced is not None:
                self._write_locked(changed=f"{cache}/{key}")

    def _write_locked(self, *, changed: str | None) -> None:
        releases = list(self.releases.items().values())
        now = self._clock()
        write_atomically(
            self.out,
            render_snapshot(
                releases,
                self.namespaces.items(),
                events=self._events,
                updated=now,
                synced=self._synced or now,
            ),
        )
        logs.event(
            "release-cache-written",
            level=logging.DEBUG if changed is None else logging.INFO,
            changed=changed,
            releases=len(releases),
            events=self._events,
        )

    def run(self) -> None:
        """Start both caches, write the first snapshot once both have listed, then keep it current."""
        for informer in (self.releases, self.namespaces):
            threading.Thread(target=informer.run, name=f"cache-{informer.name}", daemon=True).start()
        while not self.stop.is_set():
            if self.releases.synced.wait(0.5) and self.namespaces.synced.wait(0.5):
                break
        if self.stop.is_set():
            return
        with self._lock:
            self._synced = self._clock()
            self._write_locked(changed=None)
        logs.event(
            "release-cache-synced",
            out=str(self.out),
            releases=len(self.releases.items()),
            namespaces=len(self.namespaces.items()),
        )
        self.stop.wait()


def run_release_cache(out: Path, *, kubeconfig: str | None, watch_timeout: int) -> int:
    """Keep `out` current until SIGTERM or SIGINT (the kubelet's stop, or ^C)."""
    logs.configure()
    try:
        api = load_api_client(kubeconfig, fallbacks=IN_CLUSTER_THEN_KUBECONFIG)
    except ConfigException as exc:
        logs.event("release-cache-no-credentials", level=logging.ERROR, error=str(exc))
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logs.event("release-cache-starting", out=str(out), watch_timeout=watch_timeout)
    ReleaseCache(api, out, stop=stop, watch_timeout=watch_timeout).run()
    return 0
