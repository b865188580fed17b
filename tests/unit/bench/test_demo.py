"""`make demo`'s verdict (bench/demo.py): TCP echoes cut by the old Envoy's FIN are expected, nothing else."""

from __future__ import annotations

from typing import Any

from bench.demo import passed


def figures(*, failed: int = 0, tcp_failed: int = 0, unclean: int = 0, mid_echo: int = 0) -> dict[str, Any]:
    return {
        "failed": failed,
        "tcp_failed": tcp_failed,
        "tcp_unclean_closes": unclean,
        "tcp_eof_mid_echo": mid_echo,
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
