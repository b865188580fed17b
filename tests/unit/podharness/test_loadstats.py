"""The figures derived from a load run: percentiles, what counts as a request and as a failure."""

from __future__ import annotations

from podharness.figures import bench_figures
from podharness.loadstats import (
    EOF_MID_ECHO,
    Failure,
    LoadRecord,
    TcpClose,
    disallowed_failures,
    percentile,
    summarize,
)


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


# The rule of a hitless run (e2e's assert_tcp_only_cut_at_parent_exit and `make demo`), on records as the
# load generator writes them (podharness/load.py): 2 TCP connections, 1 upgrade.
CONNECTIONS, UPGRADES = 2, 1


def _cut(record: LoadRecord, at: float) -> None:
    """An echo in flight when the old Envoy's FIN arrived: a TCP failure and an unclean close."""
    record.failures.append(Failure("tcp", at, f"{EOF_MID_ECHO}: FIN with an echo outstanding (0 bytes back)"))
    record.tcp_closes.append(TcpClose(at, False, EOF_MID_ECHO))


def _why(record: LoadRecord) -> list[str]:
    return disallowed_failures(summarize(record), tcp_connections=CONNECTIONS, upgrades=UPGRADES)


def _run() -> LoadRecord:
    """A run at the old Envoy's exit: one connection idle (a clean FIN), one cut mid-echo."""
    record = LoadRecord(started_at=10.0, finished_at=20.0)
    record.latencies["http1"] += [0.001] * 50
    record.latencies["tcp"] += [0.001] * 50
    record.tcp_closes.append(TcpClose(15.0, True, "fin"))
    _cut(record, 15.0)
    return record


def test_echoes_cut_at_the_old_envoys_exit_are_allowed() -> None:
    assert _why(_run()) == []
    record = _run()
    _cut(record, 15.0)  # both connections cut by that FIN: one per connection and upgrade
    assert _why(record) == []


def test_a_cut_beyond_one_per_connection_and_upgrade_is_not_at_a_parent_exit() -> None:
    record = _run()
    _cut(record, 15.0)
    _cut(record, 17.0)
    assert _why(record) == [
        "3 echoes cut by a FIN, more than the old Envoys' exits can cut (2 connection(s) x 1 upgrade(s)): "
        "a connection was cut at another time"
    ]


def test_a_reset_is_not_allowed() -> None:
    record = _run()
    record.failures.append(Failure("tcp", 16.0, "idle: ConnectionResetError"))
    record.tcp_closes.append(TcpClose(16.0, False, "ConnectionResetError"))
    assert _why(record) == [
        "1 TCP connection(s) ended by a reset or an error, not by a FIN",
        "1 TCP failure(s) not an echo cut by a FIN (a timeout, a wrong echo, a connect)",
    ]


def test_a_timeout_or_a_wrong_echo_is_not_allowed() -> None:
    timeout = _run()
    timeout.failures.append(Failure("tcp", 16.0, "echo: TimeoutError"))
    timeout.tcp_closes.append(TcpClose(16.0, False, "TimeoutError"))
    assert "1 TCP connection(s) ended by a reset or an error, not by a FIN" in _why(timeout)
    wrong = _run()
    wrong.failures.append(Failure("tcp", 16.0, "echo mismatch: sent b'a' got b'b'"))
    assert _why(wrong) == ["1 TCP failure(s) not an echo cut by a FIN (a timeout, a wrong echo, a connect)"]


def test_an_http_failure_is_not_allowed() -> None:
    record = _run()
    record.failures.append(Failure("http1", 16.0, "HTTP 503"))
    assert _why(record) == ["1 HTTP request(s) failed"]


def test_the_bench_figures_carry_what_the_rule_reads() -> None:
    # bench/demo.py applies the rule to bench_figures' copy of the summary.
    figures = bench_figures(
        load=summarize(_run()), upgrades=[], agent_rss_bytes={}, drain_seconds=2, parent_shutdown_seconds=3
    )
    assert disallowed_failures(figures, tcp_connections=CONNECTIONS, upgrades=UPGRADES) == []
    record = _run()
    _cut(record, 15.0)
    record.failures.append(Failure("http2", 16.0, "reset"))
    figures = bench_figures(
        load=summarize(record), upgrades=[], agent_rss_bytes={}, drain_seconds=2, parent_shutdown_seconds=3
    )
    assert disallowed_failures(figures, tcp_connections=CONNECTIONS, upgrades=UPGRADES) == _why(record)
