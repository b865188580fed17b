"""Load that counts failures the way a client sees them: HTTP/1.1 keep-alive, HTTP/2 (h2c), long-lived TCP.

No retries anywhere: a connection error, reset, timeout or non-2xx answer is a failure. Reconnecting
after the server said goodbye properly (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY, a TCP FIN while no
echo is pending) is not a retry: no request is lost or repeated. A TCP connection that the server ends
is recorded as clean (FIN while idle) or not (RST, or EOF with an echo outstanding).

The generator runs its own asyncio loop in a thread, is bounded in requests and seconds, and stops by
itself; stop() ends it early and lets in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from podharness.loadstats import EOF_MID_ECHO, Failure, Kind, LoadRecord, LoadSummary, TcpClose, summarize
from podharness.loopthread import LoopThread


@dataclass(frozen=True)
class LoadConfig:
    """Where to send load and how much."""

    host: str
    http_port: int
    tcp_port: int
    http1_connections: int = 6
    http2_connections: int = 2
    http2_streams: int = 4
    tcp_connections: int = 4
    tcp_interval_s: float = 0.5
    request_timeout_s: float = 10.0
    max_requests: int = 1_000_000
    max_seconds: float = 600.0
    path: str = "/"


class _Budget:
    def __init__(self, config: LoadConfig) -> None:
        self.left = config.max_requests
        self.stop = asyncio.Event()

    def take(self) -> bool:
        if self.stop.is_set() or self.left <= 0:
            return False
        self.left -= 1
        return True


def describe_error(exc: BaseException) -> str:
    """An exception as a failure text: its type, and its message if it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class LoadGenerator:
    """Drive all three kinds of load at one Envoy address from a background thread."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.record = LoadRecord()
        self._runner = LoopThread("load generator")
        self._budget: _Budget | None = None
        self.background: set[asyncio.Task[None]] = set()  # strong refs: the loop keeps only weak ones

    def start(self) -> LoadGenerator:
        self._runner.start(self._main, ready_timeout=10)
        return self

    def stop(self, timeout: float = 60.0) -> LoadSummary:
        """Stop issuing requests, wait for in-flight ones, close connections; the summary."""
        self._runner.stop(timeout)
        return summarize(self.record)

    def summary(self) -> LoadSummary:
        """A snapshot while running (read without locking: figures for progress, not for assertions)."""
        return summarize(self.record, now=time.time())

    async def _main(self) -> None:
        self._budget = _Budget(self.config)
        self.record.started_at = time.time()
        cfg = self.config
        tasks = [asyncio.create_task(self._http1_worker()) for _ in range(cfg.http1_connections)]
        tasks += [asyncio.create_task(self._http2_worker()) for _ in range(cfg.http2_connections)]
        tasks += [asyncio.create_task(self._tcp_worker(i)) for i in range(cfg.tcp_connections)]
        self._runner.ready(self._budget.stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._budget.stop.wait(), cfg.max_seconds)
        self._budget.stop.set()
        await asyncio.gather(*tasks)
        self.record.finished_at = time.time()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)

    def _fail(self, kind: Kind, error: str) -> None:
        self.record.failures.append(Failure(kind=kind, at=time.time(), error=error))

    # HTTP/1.1 keep-alive ------------------------------------------------------------------------

    async def _http1_worker(self) -> None:
        cfg = self.config
        assert self._budget is not None
        request = f"GET {cfg.path} HTTP/1.1\r\nHost: load\r\nUser-Agent: hotupgrade-load\r\n\r\n".encode()
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while self._budget.take():
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection(cfg.host, cfg.http_port), cfg.request_timeout_s
                    )
                    self.record.connections_opened["http1"] += 1
                reader, writer = conn
                writer.write(request)
                status, close = await asyncio.wait_for(read_http1_response(reader), cfg.request_timeout_s)
            except (OSError, EOFError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                self._fail("http1", describe_error(exc))
                _close(conn)
                conn = None
                continue
            if 200 <= status < 300:
                self.record.latencies["http1"].append(time.perf_counter() - started)
            else:
                self._fail("http1", f"HTTP {status}")
            if close:
                self.record.http1_connection_close += 1
                _close(conn)
                conn = None
        _close(conn)

    # HTTP/2 ---------------------------------------------------------------------------------------

    async def _http2_worker(self) -> None:
        cfg = self.config
        assert self._budget is not None
        current: _H2Connection | None = None
        lock = asyncio.Lock()

        async def connection() -> _H2Connection:
            nonlocal current
            async with lock:
                if current is None or not current.usable():
                    if current is not None:
                        current.retire()
                    current = await _H2Connection.open(cfg.host, cfg.http_port, self)
                    self.record.connections_opened["http2"] += 1
                return current

        async def send() -> asyncio.Future[int]:
            # Check and send with no await in between, so a GOAWAY read meanwhile cannot strand the request.
            while True:
                conn = await connection()
                if conn.usable():
                    return conn.send(cfg.path)

        async def stream_loop() -> None:
            while self._budget is not None and self._budget.take():
                started = time.perf_counter()
                try:
                    response = await asyncio.wait_for(send(), cfg.request_timeout_s)
                    status = await asyncio.wait_for(response, cfg.request_timeout_s)
                except (OSError, EOFError, TimeoutError, _H2Error, h2.exceptions.ProtocolError) as exc:
                    self._fail("http2", describe_error(exc))
                    continue
                if 200 <= status < 300:
                    self.record.latencies["http2"].append(time.perf_counter() - started)
                else:
                    self._fail("http2", f"HTTP {status}")

        await asyncio.gather(*(stream_loop() for _ in range(cfg.http2_streams)))
        if current is not None:
            current.retire()

    # Long-lived TCP through tcp_proxy ---------------------------------------------------------------

    async def _tcp_worker(self, index: int) -> None:
        cfg = self.config
        assert self._budget is not None
        seq = itertools.count()
        # Spread the connections' echoes over the interval instead of sending them in lockstep.
        await asyncio.sleep(cfg.tcp_interval_s * index / max(cfg.tcp_connections, 1))
        while not self._budget.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(cfg.host, cfg.tcp_port), cfg.request_timeout_s
                )
            except (OSError, TimeoutError) as exc:
                self._fail("tcp", f"connect: {describe_error(exc)}")
                await asyncio.sleep(cfg.tcp_interval_s)
                continue
            self.record.connections_opened["tcp"] += 1
            try:
                await self._tcp_session(index, seq, reader, writer)
            finally:
                _close((reader, writer))

    async def _tcp_session(
        self,
        index: int,
        seq: itertools.count[int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Echo round trips until the server ends the connection or the run stops."""
        cfg = self.config
        assert self._budget is not None
        while self._budget.take():
            payload = f"{index}:{next(seq)}\n".encode()
            started = time.perf_counter()
            try:
                writer.write(payload)
                echoed = await asyncio.wait_for(reader.readexactly(len(payload)), cfg.request_timeout_s)
            except asyncio.IncompleteReadError as exc:
                self._fail(
                    "tcp", f"{EOF_MID_ECHO}: FIN with an echo outstanding ({len(exc.partial)} bytes back)"
                )
                self.record.tcp_closes.append(TcpClose(at=time.time(), clean=False, reason=EOF_MID_ECHO))
                return
            except (OSError, TimeoutError) as exc:
                self._fail("tcp", f"echo: {describe_error(exc)}")
                self.record.tcp_closes.append(
                    TcpClose(at=time.time(), clean=False, reason=describe_error(exc))
                )
                return
            if echoed != payload:
                self._fail("tcp", f"echo mismatch: sent {payload!r} got {echoed!r}")
                return
            self.record.latencies["tcp"].append(time.perf_counter() - started)
            # Idle until the next echo, watching for the server's FIN (or RST) meanwhile.
            try:
                data = await asyncio.wait_for(reader.read(1), cfg.tcp_interval_s)
            except TimeoutError:
                continue
            except OSError as exc:
                self._fail("tcp", f"idle: {describe_error(exc)}")
                self.record.tcp_closes.append(
                    TcpClose(at=time.time(), clean=False, reason=describe_error(exc))
                )
                return
            if data:
                self._fail("tcp", f"unexpected data while idle: {data!r}")
                return
            self.record.tcp_closes.append(TcpClose(at=time.time(), clean=True, reason="fin"))
            return


def _close(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None) -> None:
    """Close conn if it is open."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn[1].close()


async def read_http1_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; (status, server asked to close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
    if headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") == "close"


class _H2Error(Exception):
    """A stream the server reset or refused, or a connection that died under it."""


class _GracefulClientH2(h2.connection.H2Connection):
    """h2 closes its connection state on any GOAWAY (python-hyper/h2#1181), so the responses to streams the
    server still serves after a graceful GOAWAY would be protocol errors; RFC 9113 section 6.8 lets them
    complete. Keep the state open; the caller opens no new streams once it has seen a GOAWAY."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[h2.events.Event]]:
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        return frames, events


class _H2Connection:
    """One h2c connection (prior knowledge) multiplexing the streams of one worker."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, owner: LoadGenerator
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.owner = owner
        self.h2 = _GracefulClientH2(h2.config.H2Configuration(client_side=True))
        self.pending: dict[int, asyncio.Future[int]] = {}
        self.status: dict[int, int] = {}
        self.goaway = False
        self.closed = False
        self.retiring = False
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, host: str, port: int, owner: LoadGenerator) -> _H2Connection:
        reader, writer = await asyncio.open_connection(host, port)
        conn = cls(reader, writer, owner)
        conn.h2.initiate_connection()
        writer.write(conn.h2.data_to_send())
        conn.task = asyncio.create_task(conn._read_loop())
        owner.background.add(conn.task)
        conn.task.add_done_callback(owner.background.discard)
        return conn

    def usable(self) -> bool:
        return not (self.goaway or self.closed or self.retiring)

    def retire(self) -> None:
        """No new streams; close once the pending ones are done."""
        self.retiring = True
        if not self.pending:
            self._shutdown()

    def _shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

    def send(self, path: str) -> asyncio.Future[int]:
        """Open a stream for GET path now; the future resolves to the response status."""
        if not self.usable():
            raise _H2Error("connection no longer usable")
        stream_id = self.h2.get_next_available_stream_id()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending[stream_id] = future
        future.add_done_callback(lambda _: self._forget(stream_id))
        self.h2.send_headers(
            stream_id,
            [(":method", "GET"), (":scheme", "http"), (":authority", "load"), (":path", path)],
            end_stream=True,
        )
        self.writer.write(self.h2.data_to_send())
        return future

    def _forget(self, stream_id: int) -> None:
        self.pending.pop(stream_id, None)
        if self.retiring and not self.pending:
            self._shutdown()

    def _settle(self, stream_id: int, result: int | BaseException) -> None:
        future = self.pending.get(stream_id)
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    async def _read_loop(self) -> None:
        try:
            while data := await self.reader.read(65536):
                for event in self.h2.receive_data(data):
                    self._handle(event)
                self.writer.write(self.h2.data_to_send())
            reason = "connection closed by server"
        except (OSError, h2.exceptions.ProtocolError) as exc:
            reason = f"connection error: {describe_error(exc)}"
        self.closed = True
        for stream_id in list(self.pending):
            self._settle(stream_id, _H2Error(f"{reason} with stream {stream_id} in flight"))
        with contextlib.suppress(Exception):
            self.writer.close()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id is not None:
            for name, value in event.headers or []:
                if name in (b":status", ":status"):
                    self.status[event.stream_id] = int(value)
        elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
            self._settle(event.stream_id, self.status.pop(event.stream_id, 0))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id is not None:
            self._settle(event.stream_id, _H2Error(f"stream {event.stream_id} reset: {event.error_code!r}"))
        elif isinstance(event, h2.events.ConnectionTerminated):
            if not self.goaway:
                self.owner.record.http2_goaway += 1
            self.goaway = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream_id in list(self.pending):
                if stream_id > last:
                    self._settle(stream_id, _H2Error(f"stream {stream_id} refused by GOAWAY (last {last})"))
