"""How the clients users have are judged across upgrades: cut at the old Envoy's exit or failed, progress."""

from __future__ import annotations

import grpc
import pytest

from podharness.backends import stream_plan, wants_websocket
from podharness.clients import refused_by_goaway
from podharness.clientstats import (
    ClientFailure,
    ClientRecord,
    Session,
    Takeover,
    is_cut_at_parent_exit,
    summarize_clients,
    takeover_progress,
)

P = 3.0
# Began at 100, the new Envoy served at 101, the old one exited at 104.0 and its agent saw it at 104.2.
TAKEOVERS = [Takeover(began=100.0, serving=101.0, parent_exited=104.2), Takeover(200.0, 201.0, 204.3)]


@pytest.mark.parametrize(
    ("at", "cut"),
    [
        (102.9, False),  # before began + P: the old Envoy was still bound to serve it
        (103.0, True),
        (104.0, True),
        (105.2, True),  # the agent's timestamp + 1 s slack
        (105.3, False),
        (150.0, False),  # between upgrades: nothing ends a session there
        (204.0, True),
    ],
)
def test_only_an_end_from_began_plus_p_to_the_parent_exit_is_a_cut(at: float, cut: bool) -> None:
    assert is_cut_at_parent_exit(at, TAKEOVERS, P) is cut


def record() -> ClientRecord:
    rec = ClientRecord()
    rec.completions["grpc_unary"] = [100.5, 102.0, 150.0, 202.0]
    rec.completions["grpc_stream"] = [100.5, 103.5, 203.0]
    rec.completions["websocket"] = [99.0, 150.0]  # nothing during either take-over
    rec.completions["http1_close"] = [101.0, 201.0]
    rec.opened = {"grpc_unary": 5, "grpc_stream": 3, "websocket": 2, "http1_close": 2}
    rec.failures.append(ClientFailure(kind="http1_close", at=150.0, error="ConnectionResetError"))
    rec.refusals.append(ClientFailure(kind="grpc_unary", at=101.2, error="UNAVAILABLE: GOAWAY received;"))
    rec.sessions += [
        # opened on the old Envoy, messages after the new one served, ended at the old one's exit
        Session(kind="grpc_stream", opened=90.0, messages=40, last_message=103.9, ended=104.0, error="cut"),
        # ended while the old Envoy still had to serve it
        Session(kind="grpc_stream", opened=104.1, messages=2, last_message=110.0, ended=110.0, error="reset"),
        # stopped by the run, not an abnormal end
        Session(kind="grpc_stream", opened=190.0, messages=9, last_message=203.9, ended=210.0),
        Session(kind="websocket", opened=95.0, messages=3, last_message=100.5, ended=104.1, error="1006"),
    ]
    return rec


def test_summary_per_kind_counts_completed_failed_refused_and_cut() -> None:
    summary = summarize_clients(record(), TAKEOVERS, parent_shutdown_s=P)
    assert {
        kind: (s["completed"], s["failed"], s["refused"], s["cut_at_parent_exit"])
        for kind, s in summary.items()
    } == {
        "grpc_unary": (4, 0, 1, 0),
        "grpc_stream": (3, 1, 0, 1),
        "websocket": (2, 0, 0, 1),
        "http1_close": (2, 1, 0, 0),
    }
    assert summary["grpc_stream"]["unit"] == "messages" and summary["grpc_unary"]["unit"] == "requests"
    assert summary["websocket"]["min_completed_in_a_takeover"] == 0
    assert summary["grpc_stream"]["failures"] == ["110.000: reset (opened 104.100, 2 messages)"]
    assert summary["grpc_unary"]["failures"] == ["refused 101.200: UNAVAILABLE: GOAWAY received;"]
    assert set(summarize_clients(record(), TAKEOVERS, parent_shutdown_s=P, kinds=["websocket"])) == {
        "websocket"
    }


def test_progress_per_takeover_tells_which_sessions_outlived_it_and_were_cut() -> None:
    first, second = takeover_progress(record(), TAKEOVERS, P)
    assert first.completed == {"grpc_unary": 2, "grpc_stream": 2, "websocket": 0, "http1_close": 1}
    assert first.outlived == {"grpc_stream": 1, "websocket": 0}  # the WebSocket's last message came too soon
    assert first.cut == {"grpc_stream": 1, "websocket": 1}
    assert second.outlived == {"grpc_stream": 1, "websocket": 0}
    assert second.cut == {"grpc_stream": 0, "websocket": 0}


def test_stream_requests_and_websocket_upgrades() -> None:
    assert stream_plan(b"100:50") == (100, 0.05)
    assert stream_plan(b"3") == (3, 0.0)
    for bad in (b"-1:5", b"x:5", b"5:600000"):
        with pytest.raises(ValueError):
            stream_plan(bad)
    assert wants_websocket({"upgrade": "WebSocket", "connection": "Upgrade"})
    assert not wants_websocket({"connection": "close"})


@pytest.mark.parametrize(
    ("code", "details", "refused"),
    [
        (grpc.StatusCode.UNAVAILABLE, "Stream removed (GOAWAY received; Error code: 0; Debug Text: )", True),
        (grpc.StatusCode.UNAVAILABLE, "GOAWAY received; Error code: 0; Debug Text: ", True),
        # the connection closed under a stream the server had accepted: lost, not refused
        (
            grpc.StatusCode.UNAVAILABLE,
            "Stream removed (Socket closed (GOAWAY received; Error code: 0))",
            False,
        ),
        (grpc.StatusCode.UNAVAILABLE, "Connection reset by peer", False),
        (grpc.StatusCode.INTERNAL, "GOAWAY received;", False),
    ],
)
def test_a_call_is_refused_only_when_grpc_says_a_goaway_left_it_unprocessed(
    code: grpc.StatusCode, details: str, refused: bool
) -> None:
    error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)
    assert refused_by_goaway(error) is refused
