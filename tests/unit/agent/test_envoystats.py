"""Envoy's counters carried across hot restarts (agent/envoystats.py): parsing, the base, re-basing."""

from __future__ import annotations

from agent.envoystats import (
    StatsWatch,
    cumulative_samples,
    epoch_of,
    merged_parent,
    next_base,
    rebase,
)

RQ = 'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="http"}'
BUCKET = 'envoy_http_downstream_rq_time_bucket{envoy_http_conn_manager_prefix="http",le="5"}'


def exposition(*, epoch: int, generation: int, requests: int, bucket: int, active: int) -> str:
    """A slice of Envoy 1.40's /stats/prometheus, in its own spelling (`name{} value`)."""
    return (
        "# TYPE envoy_http_downstream_rq_total counter\n"
        f"{RQ} {requests}\n"
        "# TYPE envoy_http_downstream_cx_active gauge\n"
        f'envoy_http_downstream_cx_active{{envoy_http_conn_manager_prefix="http"}} {active}\n'
        "# TYPE envoy_server_hot_restart_epoch gauge\n"
        f"envoy_server_hot_restart_epoch{{}} {epoch}\n"
        "# TYPE envoy_server_hot_restart_generation gauge\n"
        f"envoy_server_hot_restart_generation{{}} {generation}\n"
        "# TYPE envoy_http_downstream_rq_time histogram\n"
        f"{BUCKET} {bucket}\n"
        'envoy_http_downstream_rq_time_sum{envoy_http_conn_manager_prefix="http"} 12.5\n'
    )


PARENT = exposition(epoch=0, generation=1, requests=1000, bucket=900, active=6)
# The child before its workers start: only the parent's counter deltas since its last flush (200).
FIRST = exposition(epoch=1, generation=2, requests=200, bucket=0, active=6)


def test_only_counters_and_histograms_are_cumulative() -> None:
    samples = cumulative_samples(PARENT)
    assert samples[RQ] == 1000 and samples[BUCKET] == 900
    assert not any("cx_active" in key or "hot_restart" in key for key in samples)
    assert epoch_of(PARENT) == 0 and epoch_of(FIRST) == 1


def test_the_child_continues_from_the_parents_last_value() -> None:
    base = next_base({}, parent=PARENT, first=FIRST)
    assert base[RQ] == 800, "1000 seen on the parent, of which 200 the child merged"
    assert base[BUCKET] == 900, "histograms are not merged: the parent's whole count"
    later = exposition(epoch=1, generation=2, requests=200 + 50, bucket=30, active=4)
    text = rebase(later, base)
    assert f"{RQ} 1050\n" in text, "1000 from the parent plus 50 served by the child"
    assert f"{BUCKET} 930\n" in text
    assert 'envoy_http_downstream_cx_active{envoy_http_conn_manager_prefix="http"} 4\n' in text, (
        "gauges as is"
    )


def test_bases_add_up_over_epochs() -> None:
    base1 = next_base({}, parent=PARENT, first=FIRST)
    parent1 = exposition(epoch=1, generation=2, requests=700, bucket=300, active=5)
    first2 = exposition(epoch=2, generation=3, requests=100, bucket=0, active=5)
    base2 = next_base(base1, parent=parent1, first=first2)
    assert rebase(first2, base2).count(f"{RQ} 1500\n") == 1, "exactly the last value exported for epoch 1"


def test_rebase_without_a_base_returns_the_text_unchanged() -> None:
    assert rebase(PARENT, {}) == PARENT


def test_a_child_that_has_not_merged_yet_is_not_taken_as_first() -> None:
    early = exposition(epoch=1, generation=1, requests=0, bucket=0, active=0)
    assert not merged_parent(early, PARENT) and merged_parent(FIRST, PARENT)
    watch = StatsWatch(parent_epoch=0, epoch=1)
    watch.observe(PARENT)
    watch.observe(early)
    assert (watch.parent, watch.done) == (PARENT, False), "not merged yet"
    newer_parent = exposition(epoch=0, generation=1, requests=1010, bucket=905, active=6)
    watch.observe(newer_parent)
    assert watch.parent == newer_parent, "the parent's last answer before its admin closed"
    watch.observe(FIRST)
    assert watch.done and watch.first == FIRST
    watch.observe(exposition(epoch=1, generation=2, requests=300, bucket=4, active=6))
    assert watch.first == FIRST, "the first merged answer, before the child serves"


def test_an_answer_from_our_envoy_before_any_from_the_parent_is_ignored() -> None:
    watch = StatsWatch(parent_epoch=0, epoch=1)
    watch.observe(FIRST)
    assert watch.parent is None and watch.first is None


def test_a_first_read_only_after_live_steps_flat_and_never_resets() -> None:
    # The busy-node race (CI, load 25 on 2 cores): the child merged and went LIVE between two polls, so
    # the watch sees the parent and then only a LIVE exposition that holds the child's own 300 requests.
    watch = StatsWatch(parent_epoch=0, epoch=1)
    watch.observe(PARENT)
    live = exposition(epoch=1, generation=2, requests=200 + 300, bucket=250, active=7)
    watch.observe_after_live(live)
    assert watch.done and watch.late
    assert watch.parent is not None and watch.first is not None
    base = next_base({}, parent=watch.parent, first=watch.first)
    at_read = cumulative_samples(rebase(live, base))
    assert at_read[RQ] == 1000, "continues from the parent's last exported value"
    after = exposition(epoch=1, generation=2, requests=520, bucket=260, active=7)
    later = cumulative_samples(rebase(after, base))
    assert later[RQ] == 1020 and later[BUCKET] == 910


def test_a_watch_that_saw_first_in_time_is_not_late() -> None:
    watch = StatsWatch(parent_epoch=0, epoch=1)
    watch.observe(PARENT)
    watch.observe(FIRST)
    watch.observe_after_live(exposition(epoch=1, generation=2, requests=900, bucket=5, active=1))
    assert watch.first == FIRST and not watch.late


def test_a_live_answer_without_the_parents_merge_is_not_taken() -> None:
    watch = StatsWatch(parent_epoch=0, epoch=1)
    watch.observe(PARENT)
    watch.observe_after_live(exposition(epoch=1, generation=1, requests=900, bucket=5, active=1))
    assert not watch.done and not watch.late


def test_with_skip_parent_stats_first_is_empty_once_ours_answers() -> None:
    # --skip-hot-restart-parent-stats: the child never merges, so the whole parent value is the base.
    watch = StatsWatch(parent_epoch=0, epoch=1, skip_parent_stats=True)
    watch.observe(PARENT)
    before_ours = watch.first
    assert before_ours is None, "not before ours answers: the parent's admin may still count"
    unmerged = exposition(epoch=1, generation=1, requests=0, bucket=0, active=0)
    watch.observe(unmerged)
    assert watch.first == ""
    assert watch.parent is not None
    base = next_base({}, parent=watch.parent, first=watch.first)
    assert base[RQ] == 1000 and base[BUCKET] == 900


def test_with_skip_parent_stats_a_read_after_live_is_not_late() -> None:
    watch = StatsWatch(parent_epoch=0, epoch=1, skip_parent_stats=True)
    watch.observe(PARENT)
    watch.observe_after_live(exposition(epoch=1, generation=1, requests=40, bucket=3, active=2))
    assert watch.first == "" and not watch.late
