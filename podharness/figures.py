"""The benchmark's one JSON object, computed from what a run observed. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from podharness.loadstats import LoadSummary

MB = 1024 * 1024


@dataclass(frozen=True)
class Targets:
    """The done-criteria of issue 2 on this machine."""

    min_requests: int = 50_000
    max_failed: int = 0
    takeover_max_s: float = 1.5
    agent_rss_max_mb: float = 40.0


@dataclass(frozen=True)
class UpgradeObservation:
    """One upgrade: wall-clock seconds since the new agent's container started."""

    epoch: int
    takeover_s: float  # agent start -> its Envoy LIVE and serving (the agent's own timestamp)
    post_start_s: float  # agent start -> the postStart hook returned 0 (what kubelet waits for)
    drain_s: float  # new Envoy serving -> old Envoy exited
    agent_takeover_s: float | None = None  # the agent's own hotupgrade_agent_takeover_seconds


def _stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "each": [round(v, 3) for v in values],
        "max": round(max(values), 3) if values else None,
        "mean": round(fmean(values), 3) if values else None,
    }


def bench_figures(
    *,
    load: LoadSummary,
    upgrades: Sequence[UpgradeObservation],
    agent_rss_bytes: Mapping[str, int],
    drain_seconds: int,
    parent_shutdown_seconds: int,
    targets: Targets = Targets(),
) -> dict[str, Any]:
    """Requests, failures, latency, takeover and drain-overhead seconds, agent RSS, and targets met."""
    takeovers = [u.takeover_s for u in upgrades]
    overhead = [u.drain_s - parent_shutdown_seconds for u in upgrades]
    rss_mb = {name: round(value / MB, 1) for name, value in sorted(agent_rss_bytes.items())}
    rss_max = max(rss_mb.values(), default=0.0)
    takeover_max = max(takeovers, default=0.0)
    met = {
        "requests": load["requests"] >= targets.min_requests,
        "failed": load["failed"] <= targets.max_failed and load["tcp_failed"] == 0,
        "takeover": bool(takeovers) and takeover_max <= targets.takeover_max_s,
        "agent_rss": bool(rss_mb) and rss_max <= targets.agent_rss_max_mb,
    }
    return {
        "upgrades": len(upgrades),
        "epochs": [u.epoch for u in upgrades],
        "requests": load["requests"],
        "failed": load["failed"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "max_ms": load["max_ms"],
        "by_kind": load["by_kind"],
        "tcp_echoes": load["tcp_echoes"],
        "tcp_failed": load["tcp_failed"],
        "tcp_clean_closes": load["tcp_clean_closes"],
        "tcp_unclean_closes": load["tcp_unclean_closes"],
        "tcp_eof_mid_echo": load["tcp_eof_mid_echo"],
        "takeover_s": _stats(takeovers),
        "post_start_s": _stats([u.post_start_s for u in upgrades]),
        "agent_reported_takeover_s": _stats(
            [u.agent_takeover_s for u in upgrades if u.agent_takeover_s is not None]
        ),
        "drain_configured_s": {"drain": drain_seconds, "parent_shutdown": parent_shutdown_seconds},
        "drain_s": _stats([u.drain_s for u in upgrades]),
        "drain_overhead_s": _stats(overhead),
        "agent_rss_mb": {"max": rss_max, "each": rss_mb},
        "load_duration_s": load["duration_s"],
        "targets": {
            "min_requests": targets.min_requests,
            "max_failed": targets.max_failed,
            "takeover_max_s": targets.takeover_max_s,
            "agent_rss_max_mb": targets.agent_rss_max_mb,
        },
        "met": met,
        "all_met": all(met.values()),
        "failures": load["failures"],
    }
