"""The clients users have, each counting what it sees without retries: gRPC unary calls and server streams
(grpcio), WebSocket connections (websockets) and HTTP/1.1 with `Connection: close` (a new connection per
request), all at one Envoy listener.

No retries anywhere: gRPC channels have retries off (`grpc.enable_retries` 0, which also turns off gRPC's
transparent retries of streams a server refused), and a failed request is recorded, never repeated. A
channel opening a new connection after a GOAWAY is not a retry. Long-lived sessions (a server stream, a
WebSocket) that end are recorded with when and why (podharness/clientstats.py judges them), and the
client opens a new one at once.

Like podharness/load.py, the clients run their own asyncio loop in a thread, are bounded in seconds, and
stop by themselves; stop() ends them early.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import grpc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from podharness.backends import STREAM_METHOD, UNARY_METHOD
from podharness.clientstats import ClientFailure, ClientKind, ClientRecord, Session
from podharness.load import describe_error, read_http1_response
from podharness.loopthread import LoopThread

# No retries of any kind, transparent ones included (gRFC A6); the channel still reconnects by itself.
CHANNEL_OPTIONS = (("grpc.enable_retries", 0),)
# How gRPC C-core (grpcio) ends a call whose stream a GOAWAY left unprocessed: one it had not yet put on
# the wire when the GOAWAY arrived, or one above the GOAWAY's last-stream-id (chttp2_transport.cc,
# cancel_unstarted_streams and the GOAWAY's stream cancellation). Status UNAVAILABLE; gRPC would retry it
# transparently. A stream the server had accepted and lost with its connection says "Socket closed".
GOAWAY_REFUSALS = ("GOAWAY received;", "Stream removed (GOAWAY received;")


@dataclass(frozen=True)
class ClientsConfig:
    """Where the clients go and how many of each; 0 turns a kind off."""

    host: str
    port: int
    grpc_unary_channels: int = 2
    grpc_unary_concurrency: int = 4  # calls in flight on each unary channel
    grpc_streams: int = 4  # server streams, all on one channel
    grpc_stream_interval_s: float = 0.05  # between a stream's messages
    grpc_stream_seconds: float = 120.0  # a stream's own length; an upgrade ends it long before
    websocket_connections: int = 4
    websocket_interval_s: float = 0.05  # between a connection's echoed messages
    http1_close_connections: int = 4  # concurrent workers, one connection per request each
    request_pause_s: float = 0.0  # between a worker's requests (unary calls, HTTP/1.1): 0 is flat out
    timeout_s: float = 10.0
    max_seconds: float = 600.0


def refused_by_goaway(exc: grpc.aio.AioRpcError) -> bool:
    """Whether gRPC ended the call because a GOAWAY left its stream unprocessed (safe to retry)."""
    details = exc.details() or ""
    return exc.code() is grpc.StatusCode.UNAVAILABLE and details.startswith(GOAWAY_REFUSALS)


def _error(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return describe_error(exc)


class UserClients:
    """Drive every configured client kind at host:port from a background thread until stop()."""

    def __init__(self, config: ClientsConfig) -> None:
        self.config = config
        self.record = ClientRecord()
        self._runner = LoopThread("the clients")
        self._stop: asyncio.Event | None = None

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    def start(self) -> UserClients:
        if not self._runner.start(self._main, ready_timeout=30):
            raise RuntimeError("the clients did not start")
        return self

    def stop(self, timeout: float = 60.0) -> ClientRecord:
        """Stop every client (sessions still open end as stopped, not as errors); the record."""
        self._runner.stop(timeout)
        return self.record

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.record.started_at = time.time()
        cfg = self.config
        unary_channels = [
            grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            for _ in range(cfg.grpc_unary_channels)
        ]
        stream_channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        tasks = [
            asyncio.create_task(self._grpc_unary(channel))
            for channel in unary_channels
            for _ in range(cfg.grpc_unary_concurrency)
        ]
        tasks += [asyncio.create_task(self._grpc_stream(stream_channel)) for _ in range(cfg.grpc_streams)]
        tasks += [asyncio.create_task(self._websocket(i)) for i in range(cfg.websocket_connections)]
        tasks += [asyncio.create_task(self._http1_close()) for _ in range(cfg.http1_close_connections)]
        self._runner.ready(self._stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), cfg.max_seconds)
        self._stop.set()
        await asyncio.gather(*tasks)
        for channel in (*unary_channels, stream_channel):
            await channel.close()
        self.record.finished_at = time.time()

    def _fail(self, kind: ClientKind, error: str, *, refused: bool = False) -> None:
        failure = ClientFailure(kind=kind, at=time.time(), error=error)
        (self.record.refusals if refused else self.record.failures).append(failure)

    async def _pause(self) -> None:
        if self.config.request_pause_s > 0:
            await asyncio.sleep(self.config.request_pause_s)

    # gRPC ------------------------------------------------------------------------------------------------

    async def _grpc_unary(self, channel: grpc.aio.Channel) -> None:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(UNARY_METHOD)
        seq = 0
        while not self._stopping():
            seq += 1
            payload = f"unary {seq}".encode()
            self.record.opened["grpc_unary"] += 1
            try:
                answer = await call(payload, timeout=self.config.timeout_s)
            except grpc.aio.AioRpcError as exc:
                self._fail("grpc_unary", _error(exc), refused=refused_by_goaway(exc))
            else:
                if answer == payload:
                    self.record.completions["grpc_unary"].append(time.time())
                else:
                    self._fail("grpc_unary", f"wrong answer {answer!r} to {payload!r}")
            await self._pause()

    async def _grpc_stream(self, channel: grpc.aio.Channel) -> None:
        cfg = self.config
        method: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(STREAM_METHOD)
        count = max(1, round(cfg.grpc_stream_seconds / cfg.grpc_stream_interval_s))
        request = f"{count}:{round(cfg.grpc_stream_interval_s * 1000)}".encode()
        while not self._stopping():
            session = Session(kind="grpc_stream", opened=time.time())
            self.record.opened["grpc_stream"] += 1
            call = method(request, timeout=cfg.grpc_stream_seconds + cfg.timeout_s)
            stopper = asyncio.create_task(self._stop_call(call))
            try:
                async for message in call:
                    if message != str(session.messages).encode():
                        self._fail("grpc_stream", f"message {message!r}, expected {session.messages}")
                        call.cancel()
                        break
                    now = time.time()
                    session.messages += 1
                    session.last_message = now
                    self.record.completions["grpc_stream"].append(now)
            except grpc.aio.AioRpcError as exc:
                if session.messages == 0 and refused_by_goaway(exc):
                    self._fail("grpc_stream", _error(exc), refused=True)
                    continue  # never opened: not a session
                if exc.code() is not grpc.StatusCode.CANCELLED or not self._stopping():
                    session.error = _error(exc)
            except asyncio.CancelledError:
                if not self._stopping():
                    raise
            finally:
                stopper.cancel()
            session.ended = time.time()
            if session.error is None and session.messages == 0 and not self._stopping():
                session.error = "stream ended before its first message"
            self.record.sessions.append(session)

    async def _stop_call(self, call: grpc.aio.UnaryStreamCall[bytes, bytes]) -> None:
        assert self._stop is not None
        await self._stop.wait()
        call.cancel()

    # WebSocket ---------------------------------------------------------------------------------------------

    async def _websocket(self, index: int) -> None:
        cfg = self.config
        # Spread the connections' messages over the interval instead of sending them in lockstep.
        await asyncio.sleep(cfg.websocket_interval_s * index / max(cfg.websocket_connections, 1))
        while not self._stopping():
            self.record.opened["websocket"] += 1
            try:
                ws = await connect(
                    f"ws://{self.target}/ws/{index}",
                    open_timeout=cfg.timeout_s,
                    ping_interval=None,  # no keep-alive pings: every frame is one of our messages
                    close_timeout=1,
                )
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                self._fail("websocket", f"connect: {_error(exc)}")
                await asyncio.sleep(cfg.websocket_interval_s)
                continue
            session = Session(kind="websocket", opened=time.time())
            try:
                await self._websocket_session(index, ws, session)
            finally:
                session.ended = session.ended or time.time()
                self.record.sessions.append(session)
                await ws.close()

    async def _websocket_session(self, index: int, ws: ClientConnection, session: Session) -> None:
        cfg = self.config
        while not self._stopping():
            payload = f"{index}:{session.messages}"
            try:
                await ws.send(payload)
                echoed = await asyncio.wait_for(ws.recv(), cfg.timeout_s)
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                session.ended = time.time()
                session.error = _error(exc)
                return
            if echoed != payload:
                self._fail("websocket", f"echo {echoed!r}, expected {payload!r}")
                return
            session.messages += 1
            session.last_message = time.time()
            self.record.completions["websocket"].append(session.last_message)
            await asyncio.sleep(cfg.websocket_interval_s)

    # HTTP/1.1, a new connection per request ---------------------------------------------------------------

    async def _http1_close(self) -> None:
        cfg = self.config
        request = (
            f"GET / HTTP/1.1\r\nHost: {self.target}\r\nUser-Agent: hotupgrade-clients\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        while not self._stopping():
            self.record.opened["http1_close"] += 1
            try:
                status = await asyncio.wait_for(self._http1_request(request), cfg.timeout_s)
            except (OSError, EOFError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                self._fail("http1_close", _error(exc))
            else:
                if 200 <= status < 300:
                    self.record.completions["http1_close"].append(time.time())
                else:
                    self._fail("http1_close", f"HTTP {status}")
            await self._pause()

    async def _http1_request(self, request: bytes) -> int:
        """One request on a new connection, closed afterwards; the status."""
        reader, writer = await asyncio.open_connection(self.config.host, self.config.port)
        try:
            writer.write(request)
            status, _ = await read_http1_response(reader)
            return status
        finally:
            writer.close()
