"""An asyncio loop in a daemon thread, for the load generators (podharness/load.py, podharness/clients.py).

The coroutine starts its tasks, calls ready() with how to stop them, and returns when they are done;
stop() asks it to stop from any thread, waits for it, and re-raises what crashed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any


class LoopThread:
    """Runs one coroutine on its own event loop in a daemon thread; `what` names it in errors."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._request_stop: Callable[[], None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, main: Callable[[], Coroutine[Any, Any, None]], *, ready_timeout: float) -> bool:
        """Start main in the thread; whether it called ready() (or crashed) within ready_timeout seconds."""
        self._thread = threading.Thread(target=self._run, args=(main,), name=self.what, daemon=True)
        self._thread.start()
        return self._ready.wait(ready_timeout)

    def ready(self, request_stop: Callable[[], None]) -> None:
        """From main, once its tasks run: request_stop (called on the loop) makes them finish."""
        self._loop = asyncio.get_running_loop()
        self._request_stop = request_stop
        self._ready.set()

    def stop(self, timeout: float) -> None:
        """Ask main to stop, wait for it; RuntimeError if it does not end in time or crashed."""
        if self._loop is not None and self._request_stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already finished by itself
                self._loop.call_soon_threadsafe(self._request_stop)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{self.what} did not stop")
        if self._error is not None:
            raise RuntimeError(f"{self.what} crashed") from self._error

    def _run(self, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
