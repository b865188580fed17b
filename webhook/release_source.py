"""The server's view of the release cache: the snapshot file webhook.releasecache writes, re-read when it
changes. Stat'ed on every call (a few microseconds), so a new pod sees a release edit as soon as the file
has been replaced; parsed only when its identity (inode, mtime, size) changes. A file that does not parse
keeps the last good snapshot (and says so in the log).
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from webhook import logs
from webhook.config_source import FileKey, file_key
from webhook.releaseimage import InvalidSnapshotError, Snapshot, parse_snapshot


class ReleaseSource:
    """Hands out the newest snapshot; None until the cache has written its first (not ready)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: FileKey | None = None
        self._snapshot: Snapshot | None = None

    def current(self) -> Snapshot | None:
        key = file_key(self.path)
        if key is None or key == self._key:
            return self._snapshot
        with self._lock:
            if key != self._key:
                self._load(key)
        return self._snapshot

    def _load(self, key: FileKey) -> None:
        self._key = key
        try:
            snapshot = parse_snapshot(self.path.read_text())
        except (InvalidSnapshotError, OSError) as exc:
            logs.event(
                "release-snapshot-unreadable", level=logging.WARNING, path=str(self.path), error=str(exc)
            )
            return
        if snapshot.invalid and (self._snapshot is None or snapshot.invalid != self._snapshot.invalid):
            logs.event(
                "release-invalid",
                level=logging.WARNING,
                releases=",".join(snapshot.invalid),
                effect="governs no pod (the controller reports why)",
            )
        self._snapshot = snapshot

    def ready(self) -> bool:
        return self.current() is not None


class ReleaseCacheCollector(Collector):
    """Scrape-time gauges read from the snapshot file, so every gunicorn worker answers alike."""

    def __init__(self, source: ReleaseSource, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> list[GaugeMetricFamily]:
        snapshot = self.source.current()
        synced = GaugeMetricFamily(
            "hotupgrade_webhook_release_cache_synced",
            "1 once the release cache has listed releases and namespaces (the server is ready only then).",
            value=0 if snapshot is None else 1,
        )
        if snapshot is None:
            return [synced]
        return [
            synced,
            GaugeMetricFamily(
                "hotupgrade_webhook_release_cache_age_seconds",
                "Seconds since the release cache last changed (a release or namespace event).",
                value=max(0.0, self.clock() - snapshot.updated),
            ),
            GaugeMetricFamily(
                "hotupgrade_webhook_release_cache_events",
                "Changes to releases and namespaces (from lists and watches) the release cache has applied "
                "since it started.",
                value=snapshot.events,
            ),
            self._releases(snapshot),
        ]

    @staticmethod
    def _releases(snapshot: Snapshot) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "hotupgrade_webhook_release_cache_releases",
            "SidecarReleases in the cache, by whether they parse (invalid ones govern no pod).",
            labels=["valid"],
        )
        family.add_metric(["true"], len(snapshot.releases))
        family.add_metric(["false"], len(snapshot.invalid))
        return family
