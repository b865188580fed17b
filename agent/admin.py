"""A small client for the Envoy admin API on 127.0.0.1 (stdlib http.client: the agent stays light).

Parsing is pure (`parse_server_info`, `parse_active_connections`); `EnvoyAdmin` does the HTTP.
The admin port is shared by the old and new Envoy (the old one closes it on ShutdownAdmin), so every
answer carries the epoch of the Envoy that gave it.
"""

from __future__ import annotations

import http.client
import json
import re

from agent.decisions import LiveEnvoy
from agent.listeners import Listener, ListenersFormatError, parse_listeners

_ACTIVE = re.compile(r"^listener\.(?!admin\.)\S+\.downstream_cx_active: (\d+)$", re.MULTILINE)


class AdminError(RuntimeError):
    """The admin API refused or answered something unexpected."""


def parse_server_info(body: bytes) -> LiveEnvoy:
    """The fields of GET /server_info that the agent needs."""
    try:
        info = json.loads(body)
        options = info["command_line_options"]
        return LiveEnvoy(
            epoch=int(options["restart_epoch"]),
            hot_restart_version=str(info["hot_restart_version"]),
            state=str(info["state"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise AdminError(f"unexpected /server_info: {error}") from None


def parse_active_connections(body: str) -> int:
    """Sum of listener downstream_cx_active, admin excluded (only ever compared with zero)."""
    return sum(int(value) for value in _ACTIVE.findall(body))


class EnvoyAdmin:
    """The admin API of whichever Envoy of the pod holds the admin port now (1 s timeout per call)."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", timeout: float = 1.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def _request(self, method: str, path: str, *, timeout: float | None = None) -> bytes:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as error:
            raise AdminError(f"{method} {path}: {error}") from None
        finally:
            conn.close()
        if response.status != 200:
            raise AdminError(f"{method} {path}: HTTP {response.status} {body[:200]!r}")
        return body

    def server_info(self) -> LiveEnvoy | None:
        """The Envoy answering on the admin port, or None if nothing answers."""
        try:
            return parse_server_info(self._request("GET", "/server_info"))
        except AdminError:
            return None

    def listeners(self) -> frozenset[Listener]:
        """GET /listeners?format=json: the active listeners; AdminError if the admin does not answer."""
        try:
            return parse_listeners(self._request("GET", "/listeners?format=json"))
        except ListenersFormatError as error:
            raise AdminError(str(error)) from None

    def drain_listeners_gracefully(self) -> None:
        """POST /drain_listeners?graceful: listeners keep accepting while connections drain."""
        self._request("POST", "/drain_listeners?graceful")

    def prometheus_stats(self) -> str:
        """GET /stats/prometheus (its text exposition); AdminError if the admin does not answer."""
        return self._request("GET", "/stats/prometheus", timeout=5.0).decode()

    def active_connections(self) -> int:
        """Downstream connections open on all listeners but admin; AdminError if the admin does not answer."""
        body = self._request("GET", "/stats?filter=downstream_cx_active")
        return parse_active_connections(body.decode())
