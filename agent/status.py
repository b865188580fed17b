"""The per-slot status server: /healthz/ready, /status (docs/contract.md "Agent status"), /metrics, and
/stats/prometheus (Envoy's exposition, counters carried across hot restarts: agent/envoystats.py), and
the take-over fence, `POST /fence` and `DELETE /fence?slot=X` (agent/fencing.py does the writing).

The documents are built by pure functions from an `AgentView` and the shared state; the server is a
stdlib ThreadingHTTPServer in a daemon thread; only the fence desk it is given writes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypedDict
from urllib.parse import parse_qs, urlsplit

from agent.contract import AgentPhase, AgentRole, Slot
from agent.fence import Fence, FenceJSON
from agent.listeners import ListenerParity, ListenerParityJSON
from agent.progress import Stall, StallJSON
from agent.state import SCHEMA_VERSION, SharedState, StateJSON, is_ready, role_of, to_json


@dataclass(frozen=True)
class AgentView:
    """What this agent knows about itself, beyond the shared state."""

    slot: Slot
    phase: AgentPhase
    epoch: int | None
    envoy_running: bool
    envoy_version: str | None
    hot_restart_version: str | None
    last_error: str | None
    listeners: ListenerParity | None = None
    stall: Stall | None = None


class StatusJSON(TypedDict):
    """GET /status (docs/contract.md "Agent status"); `schemaVersion` as the state file's."""

    schemaVersion: str
    slot: Slot
    role: AgentRole
    phase: AgentPhase
    epoch: int | None
    envoy_version: str | None
    hot_restart_version: str | None
    last_error: str | None
    listeners: ListenerParityJSON | None
    stall: StallJSON | None
    fence: FenceJSON | None
    state: StateJSON


def status_document(view: AgentView, state: SharedState, fence: Fence | None = None) -> StatusJSON:
    """The /status document of this slot; `fence`: the run dir's take-over fence (FENCE_FILE)."""
    return StatusJSON(
        schemaVersion=SCHEMA_VERSION,
        slot=view.slot,
        role=role_of(state, view.slot, envoy_running=view.envoy_running),
        phase=view.phase,
        epoch=view.epoch,
        envoy_version=view.envoy_version,
        hot_restart_version=view.hot_restart_version,
        last_error=view.last_error,
        listeners=None if view.listeners is None else view.listeners.to_json(),
        stall=None if view.stall is None else view.stall.to_json(),
        fence=None if fence is None else fence.to_json(),
        state=to_json(state),
    )


def view_is_ready(view: AgentView, state: SharedState) -> bool:
    """/healthz/ready: our Envoy is LIVE, recorded active, serving and running."""
    return view.phase == "serving" and is_ready(state, view.slot, envoy_running=view.envoy_running)


class FenceHandler(Protocol):
    """What answers the fence endpoints (agent/fencing.py FenceDesk): (HTTP code, JSON body)."""

    def fence(self, body: bytes) -> tuple[int, bytes]: ...

    def lift(self, slot_name: str) -> tuple[int, bytes]: ...


MAX_FENCE_BODY = 4096


class StatusServer:
    """Serves the endpoints from callables so it never holds stale data."""

    def __init__(
        self,
        *,
        port: int,
        view: Callable[[], AgentView],
        state: Callable[[], SharedState],
        metrics: Callable[[], bytes],
        envoy_stats: Callable[[], tuple[int, bytes]] = lambda: (404, b"not found\n"),
        fence: Callable[[], Fence | None] = lambda: None,
        fence_desk: FenceHandler | None = None,
        host: str = "0.0.0.0",
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer._handle(self)

            def do_POST(self) -> None:
                outer._handle_fence(self, "POST")

            def do_DELETE(self) -> None:
                outer._handle_fence(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._view = view
        self._state = state
        self._metrics = metrics
        self._envoy_stats = envoy_stats
        self._fence = fence
        self._fence_desk = fence_desk
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-server", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on (the bound one when 0 was asked)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve from a daemon thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz/ready":
            ready = view_is_ready(self._view(), self._state())
            self._send(request, 200 if ready else 503, b"ready\n" if ready else b"not ready\n", "text/plain")
        elif path == "/status":
            document = status_document(self._view(), self._state(), self._fence())
            body = json.dumps(document, indent=2).encode()
            self._send(request, 200, body, "application/json")
        elif path == "/metrics":
            self._send(request, 200, self._metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/stats/prometheus":
            code, body = self._envoy_stats()
            self._send(request, code, body, "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(request, 404, b"not found\n", "text/plain")

    def _handle_fence(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(request.path)
        if url.path != "/fence" or self._fence_desk is None:
            self._send(request, 404, b"not found\n", "text/plain")
            return
        if method == "DELETE":
            slot = parse_qs(url.query).get("slot", [""])[0]
            code, body = self._fence_desk.lift(slot)
        else:
            raw_length = request.headers.get("Content-Length") or "0"
            length = int(raw_length) if raw_length.isdigit() else MAX_FENCE_BODY + 1
            if length > MAX_FENCE_BODY:
                self._send(request, 413, b"body too large\n", "text/plain")
                return
            code, body = self._fence_desk.fence(request.rfile.read(length))
        self._send(request, code, body, "application/json")

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, code: int, body: bytes, content_type: str) -> None:
        request.send_response(code)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
