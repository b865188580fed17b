"""What a load run saw, and the figures derived from it. Pure: no I/O, no clock."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

Kind = Literal["http1", "http2", "tcp"]
KINDS: tuple[Kind, ...] = ("http1", "http2", "tcp")
# A TCP connection the server closed (FIN) while an echo was on its way: the unavoidable race of closing a
# request/response connection, at the moment the old Envoy exits. Counted as a failure, and told apart.
EOF_MID_ECHO = "eof-mid-echo"


@dataclass(frozen=True)
class Failure:
    """One request or echo that a client saw fail: error, reset, timeout, non-2xx."""

    kind: Kind
    at: float
    error: str


@dataclass(frozen=True)
class TcpClose:
    """A long-lived TCP connection that the server side ended; clean means FIN while no echo was pending."""

    at: float
    clean: bool
    reason: str


@dataclass
class LoadRecord:
    """Raw observations of one run, appended to by the generator's event loop only."""

    latencies: dict[Kind, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    failures: list[Failure] = field(default_factory=list)
    tcp_closes: list[TcpClose] = field(default_factory=list)
    connections_opened: dict[Kind, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    http1_connection_close: int = 0
    http2_goaway: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0


class LoadSummary(TypedDict):
    """The figures a test asserts on and a benchmark prints. `requests` and `failed` are HTTP (1.1 and 2)."""

    requests: int
    failed: int
    by_kind: dict[str, dict[str, int]]
    p50_ms: float
    p99_ms: float
    max_ms: float
    tcp_echoes: int
    tcp_failed: int
    tcp_clean_closes: int
    tcp_unclean_closes: int
    tcp_eof_mid_echo: int
    http1_connection_close: int
    http2_goaway: int
    duration_s: float
    failures: list[str]


HTTP_KINDS: tuple[Kind, ...] = ("http1", "http2")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(record: LoadRecord, *, now: float | None = None, max_listed_failures: int = 20) -> LoadSummary:
    """HTTP request counts and latency percentiles, TCP echo and close counts; `now` for a running load."""
    until = record.finished_at or (now if now is not None else record.started_at)
    ok_by_kind = {k: len(record.latencies[k]) for k in KINDS}
    failed_by_kind = {k: sum(1 for f in record.failures if f.kind == k) for k in KINDS}
    http_latencies = [v for k in HTTP_KINDS for v in record.latencies[k]]
    return LoadSummary(
        requests=sum(ok_by_kind[k] + failed_by_kind[k] for k in HTTP_KINDS),
        failed=sum(failed_by_kind[k] for k in HTTP_KINDS),
        by_kind={
            k: {
                "ok": ok_by_kind[k],
                "failed": failed_by_kind[k],
                "connections": record.connections_opened[k],
            }
            for k in KINDS
        },
        p50_ms=round(percentile(http_latencies, 50) * 1000, 3),
        p99_ms=round(percentile(http_latencies, 99) * 1000, 3),
        max_ms=round(max(http_latencies, default=0.0) * 1000, 3),
        tcp_echoes=ok_by_kind["tcp"],
        tcp_failed=failed_by_kind["tcp"],
        tcp_clean_closes=sum(1 for c in record.tcp_closes if c.clean),
        tcp_unclean_closes=sum(1 for c in record.tcp_closes if not c.clean),
        tcp_eof_mid_echo=sum(1 for c in record.tcp_closes if c.reason == EOF_MID_ECHO),
        http1_connection_close=record.http1_connection_close,
        http2_goaway=record.http2_goaway,
        duration_s=round(until - record.started_at, 3),
        failures=[f"{f.kind}@{f.at:.3f}: {f.error}" for f in record.failures[:max_listed_failures]],
    )


def disallowed_failures(load: Mapping[str, Any], *, tcp_connections: int, upgrades: int) -> list[str]:
    """Why a run under hot upgrades was not hitless, from its counts (a LoadSummary, or the bench figures
    that copy them); empty: it was. The one failure allowed is a TCP echo in flight when the old Envoy's
    exit ends its connection with a FIN, at most once per connection and upgrade: raw TCP (tcp_proxy) has
    no protocol-level goodbye and Envoy never hands established connections over (envoy#40520)."""
    cut = int(load["tcp_eof_mid_echo"])
    # load.py records each such cut twice, as an unclean close and as a TCP failure; the rest is neither.
    http = int(load["failed"])
    unclean = int(load["tcp_unclean_closes"]) - cut
    other = int(load["tcp_failed"]) - cut
    why = []
    if http > 0:
        why.append(f"{http} HTTP request(s) failed")
    if unclean > 0:
        why.append(f"{unclean} TCP connection(s) ended by a reset or an error, not by a FIN")
    if other > 0:
        why.append(f"{other} TCP failure(s) not an echo cut by a FIN (a timeout, a wrong echo, a connect)")
    if cut > tcp_connections * upgrades:
        why.append(
            f"{cut} echoes cut by a FIN, more than the old Envoys' exits can cut ({tcp_connections} "
            f"connection(s) x {upgrades} upgrade(s)): a connection was cut at another time"
        )
    return why
