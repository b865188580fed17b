"""What the clients users have saw across hot upgrades, and how it is judged. Pure: no I/O, no clock.

Two shapes of client (podharness/clients.py): request kinds (gRPC unary calls, HTTP/1.1 with
`Connection: close`), where any request that does not succeed is a failure; and session kinds (gRPC server
streams, WebSocket connections), long-lived, which Envoy cannot move to the new process: the old Envoy's
exit ends them, `parentShutdownSeconds` (P) after its drain began. A session that ends abnormally within
[take-over began + P, old Envoy gone + slack] of some upgrade is `cut_at_parent_exit`; any other abnormal
end (and any wrong message) is a failure.

A gRPC call that the HTTP/2 layer refused because of a GOAWAY before the server processed it (queued when
the GOAWAY arrived, or above its last-stream-id) is counted apart as `refused`: RFC 9113 section 6.8 makes
it safe to retry, and gRPC resends it by itself unless retries are off, as they are here
(docs/clients.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

ClientKind = Literal["grpc_unary", "grpc_stream", "websocket", "http1_close"]
CLIENT_KINDS: tuple[ClientKind, ...] = ("grpc_unary", "grpc_stream", "websocket", "http1_close")
SESSION_KINDS: tuple[ClientKind, ...] = ("grpc_stream", "websocket")
# The agent notices its Envoy's exit a little after the client sees its connection close, and a loaded
# 2-core machine adds scheduling delay: the same slack as the TCP checks (tests/integration/agent/checks.py).
CUT_SLACK_S = 1.0


@dataclass(frozen=True)
class ClientFailure:
    """A request that failed, a session that could not open, or a wrong message (seconds since the epoch)."""

    kind: ClientKind
    at: float
    error: str


@dataclass
class Session:
    """One gRPC server stream or WebSocket connection; error None: it ended normally or the run stopped it."""

    kind: ClientKind
    opened: float
    messages: int = 0
    last_message: float = 0.0
    ended: float = 0.0
    error: str | None = None


@dataclass
class ClientRecord:
    """Raw observations of one run, appended to by the clients' event loop only."""

    completions: dict[ClientKind, list[float]] = field(default_factory=lambda: {k: [] for k in CLIENT_KINDS})
    failures: list[ClientFailure] = field(default_factory=list)
    refusals: list[ClientFailure] = field(default_factory=list)  # refused unprocessed after a GOAWAY
    sessions: list[Session] = field(default_factory=list)
    opened: dict[ClientKind, int] = field(default_factory=lambda: {k: 0 for k in CLIENT_KINDS})
    started_at: float = 0.0
    finished_at: float = 0.0


@dataclass(frozen=True)
class Takeover:
    """One upgrade, in seconds since the epoch."""

    began: float  # the new sidecar container started
    serving: float  # the new Envoy serves; the old one drains from about here
    parent_exited: float  # the old Envoy is gone (its agent saw it exit)


class KindSummary(TypedDict):
    """Per client kind: `completed` counts requests (request kinds) or messages (session kinds)."""

    unit: str
    completed: int
    failed: int
    refused: int  # calls refused unprocessed after a GOAWAY: safe to retry, not in `failed`
    cut_at_parent_exit: int
    opened: int  # connections (HTTP/1.1, WebSocket), streams, or unary calls started
    min_completed_in_a_takeover: int | None  # least completed between a take-over's start and parent exit
    failures: list[str]


def is_cut_at_parent_exit(
    at: float, takeovers: Sequence[Takeover], parent_shutdown_s: float, slack_s: float = CUT_SLACK_S
) -> bool:
    """Whether an abnormal end at `at` is an old Envoy's exit: no sooner than P after a take-over began."""
    return any(t.began + parent_shutdown_s <= at <= t.parent_exited + slack_s for t in takeovers)


def session_failures(
    record: ClientRecord,
    takeovers: Sequence[Takeover],
    parent_shutdown_s: float,
    slack_s: float = CUT_SLACK_S,
) -> tuple[list[Session], list[Session]]:
    """(cut at parent exit, failed) among the sessions that ended abnormally."""
    cut: list[Session] = []
    failed: list[Session] = []
    for session in record.sessions:
        if session.error is None:
            continue
        at_exit = is_cut_at_parent_exit(session.ended, takeovers, parent_shutdown_s, slack_s)
        (cut if at_exit else failed).append(session)
    return cut, failed


@dataclass(frozen=True)
class TakeoverProgress:
    """What each client kind did during one take-over (from its start until the old Envoy was gone)."""

    completed: dict[ClientKind, int]
    # sessions opened before the take-over began that still got a message after the new Envoy served
    outlived: dict[ClientKind, int]
    cut: dict[ClientKind, int]  # sessions that the old Envoy's exit ended


def takeover_progress(
    record: ClientRecord,
    takeovers: Sequence[Takeover],
    parent_shutdown_s: float,
    slack_s: float = CUT_SLACK_S,
) -> list[TakeoverProgress]:
    """One TakeoverProgress per take-over, in order."""
    progress = []
    for t in takeovers:
        sessions = [s for s in record.sessions if s.kind in SESSION_KINDS]
        progress.append(
            TakeoverProgress(
                completed={
                    k: sum(1 for at in record.completions[k] if t.began <= at <= t.parent_exited)
                    for k in CLIENT_KINDS
                },
                outlived={
                    k: sum(
                        1
                        for s in sessions
                        if s.kind == k and s.opened < t.began and s.last_message > t.serving
                    )
                    for k in SESSION_KINDS
                },
                cut={
                    k: sum(
                        1
                        for s in sessions
                        if s.kind == k
                        and s.error is not None
                        and is_cut_at_parent_exit(s.ended, [t], parent_shutdown_s, slack_s)
                    )
                    for k in SESSION_KINDS
                },
            )
        )
    return progress


def summarize_clients(
    record: ClientRecord,
    takeovers: Sequence[Takeover],
    *,
    parent_shutdown_s: float,
    kinds: Sequence[ClientKind] = CLIENT_KINDS,
    slack_s: float = CUT_SLACK_S,
    max_listed_failures: int = 10,
) -> dict[str, KindSummary]:
    """Per client kind that ran: completed, failed, cut at parent exit, opened, and the failures' texts."""
    cut, failed = session_failures(record, takeovers, parent_shutdown_s, slack_s)
    progress = takeover_progress(record, takeovers, parent_shutdown_s, slack_s)
    summary: dict[str, KindSummary] = {}
    for kind in kinds:
        texts = [f"{f.at:.3f}: {f.error}" for f in record.failures if f.kind == kind]
        texts += [
            f"{s.ended:.3f}: {s.error} (opened {s.opened:.3f}, {s.messages} messages)"
            for s in failed
            if s.kind == kind
        ]
        summary[kind] = KindSummary(
            unit="messages" if kind in SESSION_KINDS else "requests",
            completed=len(record.completions[kind]),
            failed=len(texts),
            refused=sum(1 for f in record.refusals if f.kind == kind),
            cut_at_parent_exit=sum(1 for s in cut if s.kind == kind),
            opened=record.opened[kind],
            min_completed_in_a_takeover=min((p.completed[kind] for p in progress), default=None),
            failures=sorted(texts)[:max_listed_failures]
            + [f"refused {f.at:.3f}: {f.error}" for f in record.refusals if f.kind == kind][
                :max_listed_failures
            ],
        )
    return summary
