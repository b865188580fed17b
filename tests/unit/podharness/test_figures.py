"""The benchmark's JSON figures from one run's observations."""

from __future__ import annotations

from podharness.figures import MB, Targets, UpgradeObservation, bench_figures
from podharness.loadstats import Failure, LoadRecord, summarize


def _load(ok: int, failed: int = 0) -> LoadRecord:
    record = LoadRecord(started_at=0.0, finished_at=30.0)
    record.latencies["http1"] += [0.002] * ok
    record.failures += [Failure("http1", 1.0, "reset")] * failed
    return record


def _upgrades() -> list[UpgradeObservation]:
    return [
        UpgradeObservation(epoch=1, takeover_s=0.4, post_start_s=0.5, drain_s=3.1),
        UpgradeObservation(epoch=2, takeover_s=0.6, post_start_s=0.7, drain_s=3.3),
    ]


def test_figures_report_takeover_overhead_and_rss() -> None:
    figures = bench_figures(
        load=summarize(_load(60_000)),
        upgrades=_upgrades(),
        agent_rss_bytes={"b#2": 30 * MB, "a#1": 25 * MB},
        drain_seconds=2,
        parent_shutdown_seconds=3,
    )
    assert figures["requests"] == 60_000 and figures["failed"] == 0
    assert figures["epochs"] == [1, 2]
    assert figures["takeover_s"] == {"each": [0.4, 0.6], "max": 0.6, "mean": 0.5}
    assert figures["drain_overhead_s"]["each"] == [0.1, 0.3]
    assert figures["agent_rss_mb"] == {"max": 30.0, "each": {"a#1": 25.0, "b#2": 30.0}}
    assert figures["all_met"] is True


def test_any_failure_or_missed_target_is_reported() -> None:
    figures = bench_figures(
        load=summarize(_load(1_000, failed=1)),
        upgrades=_upgrades(),
        agent_rss_bytes={"a#1": 50 * MB},
        drain_seconds=2,
        parent_shutdown_seconds=3,
        targets=Targets(takeover_max_s=0.5),
    )
    assert figures["met"] == {"requests": False, "failed": False, "takeover": False, "agent_rss": False}
    assert figures["all_met"] is False


def test_no_upgrades_meets_nothing_about_takeover() -> None:
    figures = bench_figures(
        load=summarize(_load(60_000)),
        upgrades=[],
        agent_rss_bytes={},
        drain_seconds=2,
        parent_shutdown_seconds=3,
    )
    assert figures["takeover_s"] == {"each": [], "max": None, "mean": None}
    assert figures["met"]["takeover"] is False and figures["met"]["agent_rss"] is False
