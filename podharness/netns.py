"""Reach sockets inside a pod's network namespace from the test process.

setns(CLONE_NEWNET) changes only the calling thread, so a short-lived thread enters the namespace,
creates the socket and leaves; the socket keeps its namespace for its whole life. This lets tests
talk to 127.0.0.1 of a pod (admin API, status server) without spawning a process per request.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(None, use_errno=True)


def _enter(netns: str) -> None:
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def connect(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to host:port as seen from inside `netns`."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            _enter(netns)
            box["sock"] = socket.create_connection((host, port), timeout=timeout)
        except BaseException as exc:  # handed to the caller's thread below
            box["exc"] = exc

    thread = threading.Thread(target=run, name=f"netns-connect-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "exc" in box:
        raise box["exc"]
    sock: socket.socket = box["sock"]
    return sock


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, netns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._netns = netns

    def connect(self) -> None:
        self.sock = connect(self._netns, self.host, self.port, self.timeout or 5.0)


def http_request(
    netns: str, port: int, path: str, *, method: str = "GET", host: str = "127.0.0.1", timeout: float = 5.0
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to host:port inside `netns`; returns (status, body)."""
    conn = _NetnsHTTPConnection(netns, host, port, timeout)
    try:
        conn.request(method, path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_json(netns: str, port: int, path: str, *, timeout: float = 5.0) -> Any:
    """GET a JSON document from inside `netns`; raises on non-200."""
    status, body = http_request(netns, port, path, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET {path} on :{port} in {netns}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)
