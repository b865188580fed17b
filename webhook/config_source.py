"""The live configuration: the YAML file re-read when it changes, the last good one kept on error.

A mounted ConfigMap changes by an atomic symlink swap, so `os.stat` (which follows symlinks) sees a new
inode or mtime. The file is stat'ed at most once per `min_interval` seconds.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from webhook import logs
from webhook.config import ConfigError, WebhookConfig, load_config

FileKey = tuple[int, int, int]


def _file_key(path: Path) -> FileKey | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class ConfigSource:
    """Hands out the current config; reloads the file when its identity changes."""

    def __init__(
        self,
        path: Path | None,
        *,
        min_interval: float = 1.0,
        on_reload: Callable[[str], None] = lambda result: None,
    ) -> None:
        self.path = path
        self.min_interval = min_interval
        self.on_reload = on_reload
        self._lock = threading.Lock()
        self._key = _file_key(path) if path is not None else None
        self._config = load_config(path)  # a bad file at startup is fatal: raise
        self._checked = time.monotonic()

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
        key = _file_key(path)
        if key is None or key == self._key:
            return
        self._key = key
        try:
            config = load_config(path)
        except (ConfigError, OSError) as exc:
            logs.event(
                "config-reload-failed", level=logging.WARNING, path=str(path), error=str(exc), kept="previous"
            )
            self.on_reload("error")
            return
        changed = config != self._config
        self._config = config
        logs.event("config-reloaded", path=str(path), changed=changed, hash=config.injection_hash())
        self.on_reload("changed" if changed else "unchanged")
