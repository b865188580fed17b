"""`make demo`'s verdict (bench/demo.py): TCP echoes cut by the old Envoy's FIN are expected, nothing else
(the rule itself: podharness.loadstats.disallowed_failures, tests/unit/podharness/test_loadstats.py)."""

from __future__ import annotations

from typing import Any

from bench.demo import UPGRADES, passed, report
from bench.hotupgrade import BenchConfig


def figures(*, failed: int = 0, tcp_failed: int = 0, unclean: int = 0, mid_echo: int = 0) -> dict[str, Any]:
    return {
        "failed": failed,
        "tcp_failed": tcp_failed,
        "tcp_unclean_closes": unclean,
        "tcp_eof_mid_echo": mid_echo,
        # The demo's shape: 3 upgrades of a pod with BenchConfig's 4 TCP connections.
        "upgrades": UPGRADES,
        "load_shape": {"ours": {"tcp_connections": BenchConfig.tcp_connections}},
    }


def test_echoes_cut_by_the_old_envoys_fin_pass() -> None:
    # The newcomer's run: 1 echo in flight at the FIN, counted as a TCP failure and an unclean close.
    assert passed(figures(tcp_failed=4, unclean=4, mid_echo=4))


def test_any_http_failure_fails() -> None:
    assert not passed(figures(failed=1))


def test_a_reset_fails() -> None:
    assert not passed(figures(tcp_failed=1, unclean=2, mid_echo=1))


def test_a_tcp_failure_that_is_not_a_cut_echo_fails() -> None:
    assert not passed(figures(tcp_failed=2, unclean=1, mid_echo=1))


def test_more_cuts_than_the_old_envoys_exits_can_make_fail() -> None:
    most = UPGRADES * BenchConfig.tcp_connections
    assert passed(figures(tcp_failed=most, unclean=most, mid_echo=most))
    assert not passed(figures(tcp_failed=most + 1, unclean=most + 1, mid_echo=most + 1))


def test_the_report_says_why_it_failed() -> None:
    shown = {
        **figures(failed=2),
        "epochs": [1, 2, 3],
        "takeover_s": {"each": [0.5], "max": 0.5},
        "drain_configured_s": {"parent_shutdown": 3},
        "drain_overhead_s": {"each": [0.1]},
        "requests": 10,
        "by_kind": {"http1": {"ok": 4}, "http2": {"ok": 4}},
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "tcp_echoes": 5,
        "tcp_clean_closes": 4,
        "agent_rss_mb": {"max": 20.0},
    }
    lines = report(shown)
    assert (
        lines[1].startswith("FAIL: 3 hot upgrades") and lines[2] == "  not allowed: 2 HTTP request(s) failed"
    )
