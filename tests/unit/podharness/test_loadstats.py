"""The figures derived from a load run: percentiles, what counts as a request and as a failure."""

from __future__ import annotations

from podharness.loadstats import Failure, LoadRecord, TcpClose, percentile, summarize


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    assert percentile([], 50) == 0.0


def test_summary_counts_http_as_requests_and_tcp_apart() -> None:
    record = LoadRecord(started_at=10.0, finished_at=12.5)
    record.latencies["http1"] += [0.001, 0.002]
    record.latencies["http2"] += [0.003]
    record.latencies["tcp"] += [0.5] * 7
    record.failures += [Failure("http2", 11.0, "reset"), Failure("tcp", 11.5, "EOF mid echo")]
    record.tcp_closes += [TcpClose(11.2, True, "fin"), TcpClose(11.5, False, "eof-mid-echo")]

    summary = summarize(record)

    assert summary["requests"] == 4
    assert summary["failed"] == 1
    assert summary["tcp_echoes"] == 7 and summary["tcp_failed"] == 1
    assert summary["tcp_clean_closes"] == 1 and summary["tcp_unclean_closes"] == 1
    assert summary["tcp_eof_mid_echo"] == 1
    assert summary["p50_ms"] == 2.0 and summary["max_ms"] == 3.0, "TCP echoes stay out of HTTP latency"
    assert summary["duration_s"] == 2.5
    assert summary["failures"] == ["http2@11.000: reset", "tcp@11.500: EOF mid echo"]


def test_a_running_summary_measures_up_to_now() -> None:
    record = LoadRecord(started_at=10.0)
    assert summarize(record, now=13.0)["duration_s"] == 3.0
