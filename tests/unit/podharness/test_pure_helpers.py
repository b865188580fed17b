"""Pure helpers of the pod harness: address plan, upstream delay parsing, metrics lookup."""

from __future__ import annotations

from podharness.metrics import sample
from podharness.pod import addresses_for
from podharness.upstream import delay_seconds


def test_each_pod_gets_a_private_slash_30() -> None:
    first = addresses_for(0)
    assert (first.host_ip, first.pod_ip) == ("10.213.0.1", "10.213.0.2")
    assert addresses_for(64).host_ip == "10.213.1.1"
    assert addresses_for(16383).pod_ip == "10.213.255.254"
    assert addresses_for(16384) == first, "the plan wraps inside 10.213.0.0/16"


def test_only_slow_asks_for_a_delay() -> None:
    assert delay_seconds("/slow?ms=1500") == 1.5
    assert delay_seconds("/slow?ms=-3") == 0.0
    assert delay_seconds("/?ms=1500") == 0.0
    assert delay_seconds("/slow") == 0.0


def test_sample_matches_name_and_labels() -> None:
    text = (
        "# TYPE hotupgrade_agent_failures counter\n"
        'hotupgrade_agent_failures_total{reason="refused"} 2.0\n'
        'hotupgrade_agent_failures_total{reason="crash"} 0.0\n'
    )
    assert sample(text, "hotupgrade_agent_failures_total", {"reason": "refused"}) == 2.0
    assert sample(text, "hotupgrade_agent_failures_total", {"reason": "crash"}) == 0.0
    assert sample(text, "hotupgrade_agent_takeovers_total") is None
