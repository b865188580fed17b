"""A work queue keyed by namespace/name with requeue-after, as controller-runtime's: a key is never
processed by two workers at once, and adding a key that is already waiting does nothing.
"""

import heapq
import threading
import time
from collections.abc import Callable


class WorkQueue:
    """Thread-safe; `get` blocks until a key is due or the queue is shut down (then returns None)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._ready: list[str] = []
        self._queued: set[str] = set()  # in _ready
        self._processing: set[str] = set()
        self._dirty: set[str] = set()  # added while processing: re-queued on done()
        self._delayed: list[tuple[float, str]] = []
        self._shutdown = False

    def add(self, key: str) -> None:
        with self._cond:
            if self._shutdown or key in self._queued:
                return
            if key in self._processing:
                self._dirty.add(key)
                return
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._delayed, (self._clock() + delay, key))
            self._cond.notify()

    def _promote_due(self) -> float | None:
        """Move due delayed keys to ready; return seconds until the next one (None if none)."""
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            _, key = heapq.heappop(self._delayed)
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)
        return (self._delayed[0][0] - now) if self._delayed else None

    def get(self) -> str | None:
        with self._cond:
            while True:
                wait = self._promote_due()
                if self._shutdown:
                    return None
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                self._cond.wait(timeout=wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify()

    def depth(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._delayed)

    def shut_down(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()
