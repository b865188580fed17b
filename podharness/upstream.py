"""The app container: a small HTTP/1.1 keep-alive server and a TCP echo server behind Envoy.

Run inside the pod as `python -m podharness.upstream --http-port P` and/or `--echo-port Q` (one process
each keeps the echo round trip short while HTTP load is heavy). It is fast enough
(asyncio, no framework) that the proxy, not the app, is what a load test measures. `GET /slow?ms=N`
answers after N milliseconds, for tests that need requests in flight during a drain. The HTTP port also
takes WebSocket upgrades (an echo) and, with `--grpc-port G`, HTTP/2 with prior knowledge, which it
passes to the gRPC server on G (podharness/backends.py): one app port for all three, as Envoy's default
bootstrap expects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from podharness.backends import (
    H2_PREFACE_HEAD,
    splice_to_grpc,
    stop_on_signals,
    wants_websocket,
    websocket_echo,
)

BODY = b"ok\n"
MAX_HEADER_BYTES = 65536


def delay_seconds(target: str) -> float:
    """The delay a request target asks for (`/slow?ms=N`), 0 otherwise."""
    parts = urlsplit(target)
    if parts.path != "/slow":
        return 0.0
    values = parse_qs(parts.query).get("ms", ["0"])
    return max(0, min(int(values[0]), 60_000)) / 1000


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def http_handler(grpc_port: int | None) -> Handler:
    """The HTTP port's connection handler; HTTP/2 goes to the gRPC server at grpc_port (closed if None)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_http(reader, writer, grpc_port)

    return serve


async def _serve_http(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, grpc_port: int | None
) -> None:
    first = True
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEADER_BYTES:
                return
            if first and head == H2_PREFACE_HEAD:
                if grpc_port is not None:
                    await splice_to_grpc(head, reader, writer, grpc_port)
                return
            first = False
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            if wants_websocket(headers):
                await websocket_echo(head, reader, writer)
                return
            length = int(headers.get("content-length", "0"))
            if length:
                await reader.readexactly(length)
            delay = delay_seconds(target)
            if delay:
                await asyncio.sleep(delay)
            close = headers.get("connection", "").lower() == "close"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                % (len(BODY), b"Connection: close\r\n" if close else b"", BODY)
            )
            await writer.drain()
            if close:
                return
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        return
    finally:
        writer.close()


async def _serve_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def serve(http_port: int | None, echo_port: int | None, grpc_port: int | None = None) -> None:
    """Serve the requested protocols on 127.0.0.1 until SIGTERM or SIGINT."""
    servers = []
    if http_port is not None:
        handler = http_handler(grpc_port)
        servers.append(await asyncio.start_server(handler, "127.0.0.1", http_port, backlog=1024))
    if echo_port is not None:
        servers.append(await asyncio.start_server(_serve_echo, "127.0.0.1", echo_port, backlog=1024))
    stop = stop_on_signals()
    print(f"event=upstream_listening http_port={http_port} echo_port={echo_port}", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    print("event=upstream_stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--echo-port", type=int)
    parser.add_argument("--grpc-port", type=int, help="the gRPC server that HTTP/2 on --http-port goes to")
    args = parser.parse_args()
    if args.http_port is None and args.echo_port is None:
        parser.error("give --http-port, --echo-port or both")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.http_port, args.echo_port, args.grpc_port))


if __name__ == "__main__":
    main()
