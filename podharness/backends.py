"""The app's gRPC and WebSocket backends, for the clients of podharness/clients.py.

- gRPC (grpcio, generic handlers and raw bytes, no generated code): `Unary` echoes its request;
  `Stream` answers `b"COUNT:INTERVAL_MS"` with COUNT messages `b"0"`, `b"1"`, ... INTERVAL_MS apart.
  It runs in its own container (`python -m podharness.backends --grpc-port P`), on 127.0.0.1 only.
- WebSocket echo (the `websockets` library's sans-I/O protocol): the app's HTTP/1.1 server
  (podharness/upstream.py) hands it a connection whose request asks to upgrade.
- h2c splice: the app's port also takes HTTP/2 with prior knowledge and passes such a connection
  byte for byte to the gRPC server, so one app port speaks HTTP/1.1, WebSocket and gRPC, like an app
  that multiplexes protocols on its port (Envoy's default bootstrap sends gRPC there in HTTP/2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Mapping

import grpc
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

SERVICE = "hotupgrade.harness.Echo"
UNARY_METHOD = f"/{SERVICE}/Unary"
STREAM_METHOD = f"/{SERVICE}/Stream"
# What an HTTP/2 connection with prior knowledge starts with (RFC 9113 section 3.4), up to the first
# blank line: all the app's HTTP/1.1 parser reads before it can tell.
H2_PREFACE_HEAD = b"PRI * HTTP/2.0\r\n\r\n"
MAX_STREAM_MESSAGES = 1_000_000
MAX_INTERVAL_MS = 60_000


def stream_plan(request: bytes) -> tuple[int, float]:
    """(messages, seconds between them) that a `Stream` request asks for; ValueError if malformed."""
    count_text, _, interval_text = request.decode("ascii").partition(":")
    count, interval_ms = int(count_text), int(interval_text or "0")
    if not 0 <= count <= MAX_STREAM_MESSAGES or not 0 <= interval_ms <= MAX_INTERVAL_MS:
        raise ValueError(f"stream request out of range: {request!r}")
    return count, interval_ms / 1000


def wants_websocket(headers: Mapping[str, str]) -> bool:
    """Whether an HTTP/1.1 request (lower-case header names) asks to upgrade to WebSocket."""
    return headers.get("upgrade", "").lower() == "websocket"


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT (a container stop, Ctrl-C) sets, on the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


# gRPC ---------------------------------------------------------------------------------------------------


async def _unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _stream(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
    try:
        count, interval = stream_plan(request)
    except ValueError as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))  # raises
    for seq in range(count):
        if seq:
            await asyncio.sleep(interval)
        yield str(seq).encode()


def echo_handler() -> grpc.GenericRpcHandler:
    """The Echo service over raw bytes (no serializers: grpcio passes bytes through)."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "Stream": grpc.unary_stream_rpc_method_handler(_stream),
        },
    )


async def serve_grpc(port: int) -> None:
    """Serve Echo on 127.0.0.1:port (plaintext HTTP/2) until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((echo_handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = stop_on_signals()
    print(f"event=grpc_listening port={port}", flush=True)
    await stop.wait()
    await server.stop(grace=None)
    print("event=grpc_stopped", flush=True)


# Connections handed over by the app's HTTP/1.1 server ---------------------------------------------------


def _write(writer: asyncio.StreamWriter, protocol: ServerProtocol) -> None:
    for data in protocol.data_to_send():
        if data:
            writer.write(data)
        elif writer.can_write_eof():
            writer.write_eof()  # the protocol's SEND_EOF: half-close after our close frame


async def websocket_echo(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Finish the upgrade whose request head was read, then echo every message until either side closes."""
    protocol = ServerProtocol()
    protocol.receive_data(head)
    requests = [event for event in protocol.events_received() if isinstance(event, Request)]
    if not requests:
        return
    protocol.send_response(protocol.accept(requests[0]))
    _write(writer, protocol)
    await writer.drain()
    # ServerProtocol answers pings and close frames itself; messages here are small and unfragmented.
    while not protocol.close_expected():
        data = await reader.read(65536)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        for event in protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                protocol.send_text(event.data)
            elif isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                protocol.send_binary(event.data)
        _write(writer, protocol)
        await writer.drain()
        if not data:
            return


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        writer.close()


async def splice_to_grpc(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
) -> None:
    """Pass an HTTP/2 connection whose first bytes (`head`) were read on to the gRPC server at port."""
    try:
        grpc_reader, grpc_writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    grpc_writer.write(head)
    try:
        await asyncio.gather(_pipe(reader, grpc_writer), _pipe(grpc_reader, writer))
    finally:
        grpc_writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_grpc(args.grpc_port))


if __name__ == "__main__":
    main()
