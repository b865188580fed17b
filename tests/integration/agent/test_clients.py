"""Ten hot upgrades of a real Envoy under the clients users have, all at once, each counting for itself
without retries: gRPC unary calls and server streams (grpcio), WebSocket connections (websockets), and
HTTP/1.1 with a new connection per request (`Connection: close`).

A request of any kind must never fail. Server streams and WebSockets stay with the old Envoy, which cannot
hand them over, until it exits: each must live through the take-over and end only then, never sooner
(podharness/clientstats.py); the client then opens a new one on the new Envoy. A gRPC call that its
HTTP/2 layer refuses, unprocessed, because a GOAWAY arrived as it started is safe to retry (RFC 9113
section 6.8) and gRPC resends it itself, but not here (retries off): it is counted apart, and may only
happen while an old Envoy drains.
"""

from __future__ import annotations

import time

import pytest

from agent import contract
from podharness.clients import ClientsConfig, UserClients
from podharness.clientstats import CLIENT_KINDS, SESSION_KINDS, summarize_clients, takeover_progress
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_serving
from tests.integration.agent.conftest import PARENT_SHUTDOWN_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

UPGRADES = 10
STREAMS = 3
WEBSOCKETS = 3


def test_ten_upgrades_fail_no_request_of_any_client_kind(sidecar_pod: SidecarPod) -> None:
    config = ClientsConfig(
        host=sidecar_pod.pod.ip,
        port=contract.LISTEN_PORT,
        grpc_unary_channels=2,
        grpc_unary_concurrency=2,
        grpc_streams=STREAMS,
        websocket_connections=WEBSOCKETS,
        http1_close_connections=2,
        # Paced, so that the clients leave this 2-core machine to the two Envoys and their agents.
        request_pause_s=0.01,
        max_seconds=400,
    )
    clients = UserClients(config).start()
    try:
        time.sleep(1)
        for epoch in range(1, UPGRADES + 1):
            slot = "b" if epoch % 2 else "a"
            sidecar_pod.upgrade(slot)
            assert_serving(sidecar_pod, slot, epoch)
            time.sleep(0.5)
    finally:
        record = clients.stop()
    takeovers = [timings.takeover() for timings in sidecar_pod.timings]
    summary = summarize_clients(record, takeovers, parent_shutdown_s=PARENT_SHUTDOWN_SECONDS)
    print(summary)

    assert len(takeovers) == UPGRADES
    for kind, figures in summary.items():
        assert figures["failed"] == 0, (kind, figures["failures"])
    for refusal in record.refusals:
        assert any(t.began <= refusal.at <= t.parent_exited for t in takeovers), (refusal, takeovers)
    for kind in ("grpc_unary", "http1_close"):
        # Every request started was answered or refused unprocessed (stop() lets the last ones finish).
        assert summary[kind]["completed"] + summary[kind]["refused"] == summary[kind]["opened"], summary[kind]
        assert summary[kind]["completed"] > 0
        assert summary[kind]["cut_at_parent_exit"] == 0
    for number, progress in enumerate(takeover_progress(record, takeovers, PARENT_SHUTDOWN_SECONDS), 1):
        assert all(progress.completed[kind] > 0 for kind in CLIENT_KINDS), (number, progress)
        # Each stream and WebSocket opened on the old Envoy outlived the take-over, and its exit ended it.
        assert progress.outlived == {"grpc_stream": STREAMS, "websocket": WEBSOCKETS}, (number, progress)
        assert progress.cut == {"grpc_stream": STREAMS, "websocket": WEBSOCKETS}, (number, progress)
    for kind in SESSION_KINDS:
        assert summary[kind]["cut_at_parent_exit"] == UPGRADES * (
            STREAMS if kind == "grpc_stream" else WEBSOCKETS
        )
