"""Following a release: the summary of a status the real planner wrote, when each command is done and
with which exit code, the deadlines, and both displays."""

import io
from dataclasses import replace
from typing import Any

import pytest

from controller.cli.display import LineView, LiveView
from controller.cli.exitcodes import ExitCode
from controller.cli.follow import (
    WAITING_FOR_CONTROLLER,
    Goal,
    Summary,
    Watchdog,
    describe_patch,
    progress_line,
    summarize,
    verdict,
)
from controller.record import Phase
from controller.release import IntOrPercent, Release, ReleaseStatus
from controller.rollout import PodFacts, invalid_spec_status
from tests.unit.controller.podfixtures import NEW, OLD, T0
from tests.unit.controller.test_rollout import done, failed, fleet, in_flight, plan, release

STRATEGY_JSON = {"maxUnavailable": 2, "partition": 0, "paused": False, "maxFailures": 1}


def reading(r: Release, pods: list[PodFacts], *, generation: int | None = None, **strategy: Any) -> Summary:
    """The release as the API server returns it after the controller planned `r` over `pods`."""
    status = plan(r, pods).status
    doc = {
        "metadata": {"name": r.name, "generation": generation or r.generation},
        "spec": {"image": r.spec.image, "strategy": {**STRATEGY_JSON, **strategy}},
        "status": status.to_json(),
    }
    return summarize(doc)


def test_a_rollout_in_flight_is_followed() -> None:
    pods = [done("web-0"), in_flight("web-1", Phase.TAKING_OVER), *fleet(4)[2:]]
    summary = reading(release(max_unavailable=IntOrPercent(2)), pods)
    # web-1 taking over is at risk; web-2 and web-3 start held before their swap (held room 2).
    assert (summary.fresh, summary.matched, summary.goal, summary.updated, summary.upgrading) == (
        True,
        4,
        4,
        1,
        3,
    )
    assert summary.reason == "RollingOut"
    assert verdict(summary, Goal.CONVERGED) is None
    assert progress_line(summary).startswith(
        f"web: 1/4 pod(s) on {NEW}, upgrading 3, failed 0 (matched 4); RollingOut: "
    )


def test_complete_ends_the_rollout_with_0_and_the_partition_is_the_goal() -> None:
    pods = [done("web-0"), done("web-1"), *fleet(3)[2:]]
    r = release(partition=IntOrPercent(1), max_unavailable=IntOrPercent(2))
    summary = reading(r, pods, partition=1)
    assert (summary.goal, summary.updated, summary.complete_reason) == (2, 2, "PartitionReached")
    end = verdict(summary, Goal.CONVERGED)
    assert end is not None and end.code == ExitCode.OK and "complete (PartitionReached)" in end.text


def test_a_status_of_the_previous_generation_never_ends_a_command() -> None:
    # Complete for generation 2; the user's edit made generation 3, which the controller has not seen.
    summary = reading(release(), [done("web-0")], generation=3)
    assert summary.complete_reason == "AllPodsUpdated" and not summary.fresh
    assert summary.reason == WAITING_FOR_CONTROLLER
    assert "observe generation 3 (status is of generation 2)" in progress_line(summary)
    assert verdict(summary, Goal.CONVERGED) is None and verdict(summary, Goal.PAUSED) is None


def test_no_status_yet_says_the_controller_may_not_run() -> None:
    summary = summarize({"metadata": {"name": "web", "generation": 1}, "spec": {"image": NEW}})
    assert summary.observed is None and not summary.fresh
    assert "is hotupgrade-controller running" in progress_line(summary)
    assert verdict(summary, Goal.CONVERGED) is None


def test_too_many_failures_ends_with_1_and_offers_the_rollback() -> None:
    pods = [failed("web-0"), *fleet(3)[1:]]
    summary = reading(release(), pods)
    assert (summary.paused_reason, summary.degraded_reason) == ("TooManyFailures", "TooManyFailures")
    end = verdict(summary, Goal.CONVERGED)
    assert end is not None and end.code == ExitCode.FAILED
    assert f"`hotupgrade rollback web` (to {OLD})" in end.text and "shop/web-0" in end.text


def test_failures_below_max_failures_go_on_until_nothing_more_starts() -> None:
    r = release(max_failures=2)
    going = reading(r, [failed("web-0"), in_flight("web-1", Phase.DRAINING)], maxFailures=2)
    assert going.degraded_reason == "UpgradesFailed" and going.paused_reason is None
    assert verdict(going, Goal.CONVERGED) is None
    ended = reading(r, [failed("web-0"), done("web-1")], maxFailures=2)
    assert ended.reason == "UpgradesFailed"
    end = verdict(ended, Goal.CONVERGED)
    assert end is not None and end.code == ExitCode.FAILED and "degraded (UpgradesFailed)" in end.text


def test_pause_waits_for_the_upgrades_in_flight_then_ends_with_0() -> None:
    r = release(paused=True)
    busy = reading(r, [in_flight("web-0", Phase.DRAINING), *fleet(3)[1:]], paused=True)
    assert busy.paused_reason == "PausedBySpec" and busy.upgrading == 1
    assert verdict(busy, Goal.PAUSED) is None, "an upgrade in flight finishes first"
    quiet = reading(r, [done("web-0"), *fleet(3)[1:]], paused=True)
    end = verdict(quiet, Goal.PAUSED)
    assert end is not None and end.code == ExitCode.OK and "paused, nothing in flight; 1 of 3" in end.text
    # A rollout or resume that meets a paused release stops following with its own code.
    stopped = verdict(quiet, Goal.CONVERGED)
    assert stopped is not None and stopped.code == ExitCode.PAUSED and "hotupgrade resume web" in stopped.text


def test_a_pause_undone_meanwhile_fails_the_pause() -> None:
    summary = reading(release(), [done("web-0"), *fleet(2)[1:]])
    end = verdict(summary, Goal.PAUSED)
    assert end is not None and end.code == ExitCode.FAILED and "not paused" in end.text


def test_an_invalid_spec_ends_any_command_with_1() -> None:
    status = invalid_spec_status(ReleaseStatus(), generation=2, why="spec.image: 'X' is not an image", now=T0)
    doc = {"metadata": {"name": "web", "generation": 2}, "spec": {"image": "X"}, "status": status.to_json()}
    for goal in Goal:
        end = verdict(summarize(doc), goal)
        assert end is not None and end.code == ExitCode.FAILED and "is not an image" in end.text


def test_the_watchdog_counts_from_the_last_change() -> None:
    summary = reading(
        release(max_unavailable=IntOrPercent(2)), [in_flight("web-0", Phase.TAKING_OVER), *fleet(2)[1:]]
    )
    dog = Watchdog(started=100.0, timeout=0, progress_deadline=30)
    assert dog.check(summary, 100.0) is None
    assert dog.check(summary, 129.0) is None
    moved = replace(summary, updated=1, upgrading=0)
    assert dog.check(moved, 129.5) is None, "a change restarts the deadline"
    assert dog.check(moved, 159.0) is None
    why = dog.check(moved, 159.6)
    assert why is not None and why.startswith("no progress for 30s")
    total = Watchdog(started=0.0, timeout=60, progress_deadline=0)
    assert total.check(summary, 59.0) is None
    said = total.check(replace(summary, updated=2), 60.0)
    assert said is not None and said.startswith("timed out after 60s")


def test_describe_patch_names_the_fields() -> None:
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "replace", "path": "/spec/image", "value": NEW},
        {"op": "replace", "path": "/spec/strategy/paused", "value": True},
        {"op": "remove", "path": "/spec/namespaceSelector"},
    ]
    assert describe_patch("web", ops) == (
        f"web: spec.image={NEW}, spec.strategy.paused=true, spec.namespaceSelector removed"
    )


def test_the_line_view_writes_each_change_once() -> None:
    out = io.StringIO()
    view = LineView(out)
    summary = reading(release(), [in_flight("web-0", Phase.TAKING_OVER), *fleet(2)[1:]])
    view.show(summary)
    view.show(summary)
    view.show(replace(summary, updated=1))
    view.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("progress: web: ") for line in lines)
    assert "0/2 pod(s)" in lines[0] and "1/2 pod(s)" in lines[1]


@pytest.mark.parametrize("fresh", [True, False])
def test_the_live_view_draws_a_bar_and_the_message(fresh: bool) -> None:
    out = io.StringIO()
    view = LiveView(out)
    summary = reading(release(), [done("web-0"), in_flight("web-1", Phase.TAKING_OVER), *fleet(4)[2:]])
    view.show(summary if fresh else replace(summary, fresh=False, message="waiting for the controller"))
    view.close()
    drawn = out.getvalue()
    assert "\x1b[" in drawn, "redrawn in place on a terminal"
    assert f"web → {NEW}" in drawn
    if fresh:
        # web-1 taking over; web-2 starts held (pre-pulls) meanwhile
        assert "1/4" in drawn and "RollingOut:" in drawn and "upgrading 2" in drawn
    else:
        assert "waiting for the controller" in drawn
