"""The live configuration: the YAML file re-read when it changes, the last good one kept on error.

A mounted ConfigMap changes by an atomic symlink swap, so `os.stat` (which follows symlinks) sees a new
inode or mtime. The file is stat'ed at most once per `min_interval` seconds.

"Last good" must hold across processes too: gunicorn starts workers after the master (and again after a
worker dies), and a worker that found only a bad file would fail to boot and take the whole server down
with it. So every good version is also copied to `last_good` (a file private to this server), and a
process that starts while the file is bad serves that copy, as its siblings do.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from webhook import logs
from webhook.config import ConfigError, WebhookConfig, config_from_yaml, read_config_text

FileKey = tuple[int, int, int]


def file_key(path: Path) -> FileKey | None:
    """A file's identity (inode, mtime, size) through symlinks; None when it cannot be stat'ed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (a rename within the directory)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ConfigSource:
    """Hands out the current config; reloads the file when its identity changes."""

    def __init__(
        self,
        path: Path | None,
        *,
        min_interval: float = 1.0,
        on_reload: Callable[[str], None] = lambda result: None,
        last_good: Path | None = None,
    ) -> None:
        self.path = path
        self.min_interval = min_interval
        self.on_reload = on_reload
        self.last_good = last_good
        self._lock = threading.Lock()
        self._key = file_key(path) if path is not None else None
        self._config = self._initial(path)
        self._checked = time.monotonic()

    def _initial(self, path: Path | None) -> WebhookConfig:
        if path is None:
            return WebhookConfig()
        try:
            return self._load(path)
        except (ConfigError, OSError) as exc:
            config = self._last_good_config()
            if config is None:
                raise  # no good version was ever seen: a bad file at startup is fatal
            logs.event(
                "config-reload-failed",
                level=logging.WARNING,
                path=str(path),
                error=str(exc),
                kept="last-good",
            )
            self.on_reload("error")
            return config

    def _last_good_config(self) -> WebhookConfig | None:
        """The newest version any process of this server validated, or None if there is none."""
        if self.last_good is None:
            return None
        try:
            return config_from_yaml(self.last_good.read_text(), source=str(self.last_good))
        except (ConfigError, OSError):
            return None

    def _load(self, path: Path) -> WebhookConfig:
        text = read_config_text(path)
        config = config_from_yaml(text, source=str(path))
        if self.last_good is not None:
            write_atomically(self.last_good, text)
        return config

    def current(self) -> WebhookConfig:
        if self.path is None:
            return self._config
        now = time.monotonic()
        if now - self._checked < self.min_interval:
            return self._config
        with self._lock:
            if now - self._checked >= self.min_interval:
                self._checked = now
                self._maybe_reload(self.path)
        return self._config

    def _maybe_reload(self, path: Path) -> None:
        key = file_key(path)
        if key is None or key == self._key:
            return
        self._key = key
        try:
            config = self._load(path)
        except (ConfigError, OSError) as exc:
            # A sibling worker may have validated a version this one never read before the file went bad:
            # serve that one (the shared copy), so that all workers agree on the last good version.
            fallback = self._last_good_config()
            kept = "previous"
            if fallback is not None and fallback != self._config:
                self._config, kept = fallback, "last-good"
            logs.event(
                "config-reload-failed", level=logging.WARNING, path=str(path), error=str(exc), kept=kept
            )
            self.on_reload("error")
            return
        changed = config != self._config
        self._config = config
        logs.event("config-reloaded", path=str(path), changed=changed, hash=config.injection_hash())
        self.on_reload("changed" if changed else "unchanged")
