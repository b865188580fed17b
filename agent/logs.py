"""Structured logs: one JSON object per line on stderr, always with slot, epoch and phase."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO


class EventLog:
    """Writes events with the agent's current context; safe to call from any thread."""

    def __init__(self, slot: str, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()
        self._context: dict[str, Any] = {"slot": slot, "epoch": None, "phase": None}

    def bind(self, **context: Any) -> None:
        """Update the context every later event carries (epoch, phase)."""
        with self._lock:
            self._context.update(context)

    def event(self, name: str, *, level: str = "info", **fields: Any) -> None:
        """Write one event line with the bound context and `fields`."""
        with self._lock:
            record = {"ts": round(time.time(), 3), "level": level, "event": name, **self._context, **fields}
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()

    def error(self, name: str, **fields: Any) -> None:
        """An event at level error."""
        self.event(name, level="error", **fields)

    def warning(self, name: str, **fields: Any) -> None:
        """An event at level warning."""
        self.event(name, level="warning", **fields)
