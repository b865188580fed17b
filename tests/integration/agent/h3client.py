"""An HTTP/3 prober on aioquic (not a project dependency: `pip install aioquic` to run the HTTP/3
measurement, tests/integration/agent/test_http3_upgrade.py). Counted by the client itself, no retries.

One long-lived connection sends a GET every `interval` seconds until it fails (then a new one takes its
place), and a new connection makes one GET every `interval` seconds; each outcome is kept with its time.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent


class _H3(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._waiting: dict[int, asyncio.Future[int]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ConnectionTerminated):
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"connection closed: {event.reason_phrase}"))
        for h3_event in self._http.handle_event(event):
            if isinstance(h3_event, HeadersReceived):
                waiter = self._waiting.get(h3_event.stream_id)
                status = dict(h3_event.headers).get(b":status", b"0")
                if waiter is not None and not waiter.done():
                    waiter.set_result(int(status))

    async def get(self, authority: str, timeout: float) -> int:
        stream_id = self._quic.get_next_available_stream_id()
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode())]
        self._http.send_headers(stream_id, [*headers, (b":path", b"/")], end_stream=True)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting[stream_id] = future
        self.transmit()
        return await asyncio.wait_for(future, timeout)


@dataclass
class H3Probe:
    """Outcomes are (time.time(), kind "long" or "new", ok, detail)."""

    host: str
    port: int
    interval: float = 0.2
    timeout: float = 3.0
    outcomes: list[tuple[float, str, bool, str]] = field(default_factory=list)
    long_connections: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _config(self) -> QuicConfiguration:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
        config.verify_mode = ssl.CERT_NONE
        return config

    def start(self) -> H3Probe:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def _main(self) -> None:
        await asyncio.gather(self._long(), self._new())

    def _record(self, kind: str, ok: bool, detail: str) -> None:
        self.outcomes.append((time.time(), kind, ok, detail))

    async def _long(self) -> None:
        while not self._stop.is_set():
            self.long_connections += 1
            try:
                async with connect(
                    self.host, self.port, configuration=self._config(), create_protocol=_H3
                ) as client:
                    assert isinstance(client, _H3)
                    while not self._stop.is_set():
                        status = await client.get(f"{self.host}:{self.port}", self.timeout)
                        self._record("long", status == 200, f"status {status}")
                        await asyncio.sleep(self.interval)
            except Exception as error:  # any failure is an outcome; the next connection goes on
                self._record("long", False, f"{type(error).__name__}: {error}")

    async def _new(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                async with connect(
                    self.host, self.port, configuration=self._config(), create_protocol=_H3
                ) as client:
                    assert isinstance(client, _H3)
                    status = await client.get(f"{self.host}:{self.port}", self.timeout)
                    self._record("new", status == 200, f"status {status}")
            except Exception as error:
                self._record("new", False, f"{type(error).__name__}: {error}")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def between(self, kind: str, start: float, end: float) -> tuple[int, int, list[str]]:
        """(outcomes, failures, failure details) of `kind` in [start, end)."""
        rows = [row for row in self.outcomes if row[1] == kind and start <= row[0] < end]
        failed = [row[3] for row in rows if not row[2]]
        return len(rows), len(failed), failed[:3]
