"""HTTP/2 connections that go quiet while the old Envoy drains: each gets both GOAWAYs before it exits.

Envoy drains an HTTP connection only when it answers a request on it (envoy#14350), so without the
agent's HTTP/2 idle timeout a connection idle through the drain was closed at the old Envoy's exit with
no GOAWAY, and a request sent in that instant was lost (docs/http-drain.md). Here each connection is
busy until the drain starts, then idle; at the old Envoy's exit each client sends one more request, on
its old connection if it never heard a GOAWAY there, else on a new one, as RFC 9113 section 6.8 asks.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field

import h2.config
import h2.events
import pytest

from agent import contract
from podharness.load import _GracefulClientH2
from podharness.sidecar import SidecarPod
from tests.integration.agent.conftest import PARENT_SHUTDOWN_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONNECTIONS = 12
GRACEFUL_LAST_STREAM = 2**31 - 1


@dataclass
class Connection:
    """One h2c connection (prior knowledge) and what the server told it."""

    sock: socket.socket
    h2: _GracefulClientH2
    goaways: list[int] = field(default_factory=list)  # last-stream-ids, in arrival order
    closed_after_goaways: int | None = None  # how many GOAWAYs had arrived when the server closed
    responses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, host: str) -> Connection:
        sock = socket.create_connection((host, contract.LISTEN_PORT), timeout=10)
        sock.settimeout(None)
        conn = cls(sock, _GracefulClientH2(h2.config.H2Configuration(client_side=True)))
        conn.h2.initiate_connection()
        sock.sendall(conn.h2.data_to_send())
        threading.Thread(target=conn._read, daemon=True).start()
        return conn

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.lock:
                if not data:
                    self.closed_after_goaways = len(self.goaways)
                    return
                for event in self.h2.receive_data(data):
                    if isinstance(event, h2.events.ConnectionTerminated):
                        # Every GOAWAY frame carries one; h2 types it optional.
                        self.goaways.append(-1 if event.last_stream_id is None else event.last_stream_id)
                    elif isinstance(event, h2.events.ResponseReceived):
                        self.responses[event.stream_id] = int(dict(event.headers)[b":status"])
                self.sock.sendall(self.h2.data_to_send())

    def usable(self) -> bool:
        with self.lock:
            return not self.goaways and self.closed_after_goaways is None

    def get(self, timeout: float = 5.0) -> int | str:
        """GET / on this connection: the status, or what went wrong."""
        with self.lock:
            stream_id = self.h2.get_next_available_stream_id()
            headers = [(":method", "GET"), (":path", "/"), (":authority", "pod"), (":scheme", "http")]
            self.h2.send_headers(stream_id, headers, end_stream=True)
            try:
                self.sock.sendall(self.h2.data_to_send())
            except OSError as error:
                return f"send failed: {error}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if stream_id in self.responses:
                    return self.responses[stream_id]
                if self.closed_after_goaways is not None:
                    return f"connection closed after GOAWAYs {self.goaways}"
            time.sleep(0.005)
        return "timeout"


def test_idle_http2_connections_get_both_goaways_before_the_old_envoy_exits(sidecar_pod: SidecarPod) -> None:
    host = sidecar_pod.pod.ip
    connections = [Connection.open(host) for _ in range(CONNECTIONS)]
    assert {conn.get() for conn in connections} == {200}
    draining = threading.Event()

    def keep_busy(conn: Connection) -> None:
        # Busy (more often than the idle timeout, P/2) until the drain starts, idle from then on.
        while not draining.wait(0.5):
            assert conn.get() == 200

    busy = [threading.Thread(target=keep_busy, args=(conn,)) for conn in connections]
    upgrade = threading.Thread(target=sidecar_pod.upgrade, args=("b",))
    for thread in (*busy, upgrade):
        thread.start()
    sidecar_pod.wait_for("b serving", lambda: sidecar_pod.slot_phase("b") == "serving", timeout=120)
    drain_started = float(sidecar_pod.state()["slots"]["b"]["since"])
    draining.set()
    for thread in busy:
        thread.join()

    outcomes: list[int | str] = []
    reconnected: list[Connection] = []

    def at_exit(conn: Connection) -> None:
        # The old Envoy exits PARENT_SHUTDOWN_SECONDS after the drain started; aim around that instant.
        due = drain_started + PARENT_SHUTDOWN_SECONDS + random.uniform(-0.1, 0.02)
        time.sleep(max(0.0, due - time.time()))
        if not conn.usable():
            conn = Connection.open(host)
            reconnected.append(conn)
        outcomes.append(conn.get())

    last = [threading.Thread(target=at_exit, args=(conn,)) for conn in connections]
    for thread in last:
        thread.start()
    for thread in last:
        thread.join()
    upgrade.join()
    for conn in (*connections, *reconnected):
        conn.sock.close()

    assert outcomes == [200] * CONNECTIONS
    for conn in connections:
        assert len(conn.goaways) == 2 and conn.goaways[0] == GRACEFUL_LAST_STREAM, conn.goaways
        assert conn.goaways[1] < GRACEFUL_LAST_STREAM, "the final GOAWAY names the last stream served"
        assert conn.closed_after_goaways == 2, "the old Envoy closed the connection only after both GOAWAYs"
