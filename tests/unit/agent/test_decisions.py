"""The agent's pure decisions: epochs, takeover vs fresh start vs refusal, what an Envoy exit means."""

from __future__ import annotations

import pytest

from agent.decisions import (
    INITIALIZING_FLAG,
    LIVE,
    UNKNOWN,
    BootstrapInvalid,
    BootstrapValid,
    FreshStart,
    LiveEnvoy,
    Observation,
    Refuse,
    Restart,
    Retire,
    Stopped,
    TakeOver,
    ValidationInconclusive,
    Wait,
    after_envoy_exit,
    bootstrap_verdict,
    choose_epoch,
    decide_start,
    drain_progress,
    live_envoy,
    must_clear_initializing,
    parent_vanished_early,
    socket_id,
)
from agent.state import SharedState, initial_state, with_active

OURS = "11.104"


def active(slot: str = "a", epoch: int = 0, version: str = OURS) -> SharedState:
    assert slot in ("a", "b")
    return with_active(
        initial_state(7),
        "a" if slot == "a" else "b",
        now=1.0,
        epoch=epoch,
        pid=10,
        envoy_version="1.40.0",
        hot_restart_version=version,
    )


def observe(
    state: SharedState,
    *,
    admin: LiveEnvoy | None = None,
    bound: frozenset[int] = frozenset(),
    own: str = OURS,
) -> Observation:
    return Observation(state=state, admin=admin, bound_socket_ids=bound, own_hot_restart_version=own)


def test_fresh_pod_starts_at_epoch_zero() -> None:
    assert decide_start(observe(initial_state(7))) == FreshStart(epoch=0)


def test_live_envoy_is_taken_over_at_the_next_epoch_with_its_parent_named() -> None:
    decision = decide_start(observe(active(epoch=4), admin=LiveEnvoy(4, OURS, LIVE), bound=frozenset({1})))
    assert decision == TakeOver(epoch=5, parent_epoch=4)


def test_admin_answer_wins_over_a_stale_state_file() -> None:
    decision = decide_start(observe(active(epoch=1), admin=LiveEnvoy(6, OURS, LIVE)))
    assert decision == TakeOver(epoch=7, parent_epoch=6)


def test_hot_restart_version_mismatch_is_refused_with_both_versions() -> None:
    decision = decide_start(observe(active(), admin=LiveEnvoy(0, "10.104", LIVE)))
    assert isinstance(decision, Refuse)
    assert "10.104" in decision.reason and OURS in decision.reason


def test_mismatch_against_the_recorded_version_when_the_admin_is_silent() -> None:
    decision = decide_start(observe(active(epoch=2, version="12.112"), bound=frozenset({socket_id(2)})))
    assert isinstance(decision, Refuse)


def test_a_live_envoy_that_is_not_yet_live_makes_us_wait() -> None:
    decision = decide_start(observe(active(), admin=LiveEnvoy(0, OURS, "INITIALIZING")))
    assert isinstance(decision, Wait)


def test_recorded_epoch_with_a_bound_socket_counts_as_live_without_admin() -> None:
    observation = observe(active(epoch=3), bound=frozenset({socket_id(3)}))
    assert live_envoy(observation) == LiveEnvoy(3, OURS, UNKNOWN)
    assert decide_start(observation) == TakeOver(epoch=4, parent_epoch=3)


def test_parent_of_a_dead_recorded_child_is_found_by_its_socket() -> None:
    # Recorded epoch 5 crashed mid-drain; its parent 4 still holds its socket.
    observation = observe(active(epoch=5), bound=frozenset({socket_id(4)}))
    assert decide_start(observation) == TakeOver(epoch=5, parent_epoch=4)


def test_dead_recorded_envoy_means_fresh_start() -> None:
    assert decide_start(observe(active(epoch=5))) == FreshStart(epoch=0)


def test_unknown_bound_sockets_make_us_wait() -> None:
    decision = decide_start(observe(initial_state(7), bound=frozenset({2})))
    assert isinstance(decision, Wait)
    assert "[2]" in decision.reason


@pytest.mark.parametrize(
    ("live", "epoch"), [(None, 0), (LiveEnvoy(0, OURS, LIVE), 1), (LiveEnvoy(8, OURS, LIVE), 9)]
)
def test_choose_epoch(live: LiveEnvoy | None, epoch: int) -> None:
    assert choose_epoch(live) == epoch


def test_socket_ids_wrap_every_three_epochs() -> None:
    assert [socket_id(e) for e in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_exit_zero_after_being_replaced_retires() -> None:
    assert after_envoy_exit(active("b", epoch=1), "a", epoch=0, returncode=0, stopping=False) == Retire(None)


def test_killed_while_draining_retires_with_the_reason() -> None:
    action = after_envoy_exit(active("b", epoch=1), "a", epoch=0, returncode=-9, stopping=False)
    assert action == Retire("Envoy killed by signal 9 while draining")


def test_a_newer_epoch_of_the_same_slot_also_means_replaced() -> None:
    assert isinstance(
        after_envoy_exit(active("a", epoch=3), "a", epoch=2, returncode=0, stopping=False), Retire
    )


@pytest.mark.parametrize("returncode", [0, 1, -6])
def test_active_envoy_exit_is_a_crash_to_restart(returncode: int) -> None:
    action = after_envoy_exit(active("a", epoch=2), "a", epoch=2, returncode=returncode, stopping=False)
    assert isinstance(action, Restart)


def test_exit_we_asked_for_is_just_stopped() -> None:
    assert after_envoy_exit(active("a", epoch=2), "a", epoch=2, returncode=0, stopping=True) == Stopped()


@pytest.mark.parametrize(
    ("flags", "live_state", "clear"),
    [
        (0, LIVE, False),
        (INITIALIZING_FLAG, LIVE, True),
        (INITIALIZING_FLAG, UNKNOWN, True),
        (INITIALIZING_FLAG, None, True),
        (INITIALIZING_FLAG, "INITIALIZING", False),
        (INITIALIZING_FLAG, "PRE_INITIALIZING", False),
        (0x2, LIVE, False),
    ],
)
def test_initializing_flag_is_cleared_only_when_no_envoy_can_be_initialising(
    flags: int, live_state: str | None, clear: bool
) -> None:
    assert must_clear_initializing(flags, live_state=live_state) is clear


@pytest.mark.parametrize(("elapsed", "early"), [(0.5, True), (13.9, True), (14.0, False), (30.0, False)])
def test_parent_vanishing_before_terminate_is_early(elapsed: float, early: bool) -> None:
    assert parent_vanished_early(seconds_since_live=elapsed, parent_shutdown_seconds=15) is early


@pytest.mark.parametrize(
    ("active_connections", "seconds", "progress"),
    [(0, 0.0, "done"), (3, 1.0, "wait"), (None, 1.0, "wait"), (3, 10.0, "deadline"), (0, 10.0, "done")],
)
def test_drain_waits_for_zero_connections_or_the_deadline(
    active_connections: int | None, seconds: float, progress: str
) -> None:
    assert (
        drain_progress(active_connections=active_connections, seconds_draining=seconds, drain_seconds=10)
        == progress
    )


REJECTED = (
    "[2026-11-26 14:34:05.224][31833][critical][main] [source/server/config_validation/server.cc:76] "
    "error initializing configuration 'bad.yaml': route: unknown cluster 'no_such_cluster'\n"
)


def test_validation_exit_zero_is_a_valid_bootstrap() -> None:
    assert bootstrap_verdict(0, "configuration 'x.yaml' OK\n") == BootstrapValid()


def test_rejected_bootstrap_keeps_envoys_message_without_the_log_prefix() -> None:
    verdict = bootstrap_verdict(1, "some warning\n" + REJECTED)
    assert verdict == BootstrapInvalid(
        "Envoy rejected the bootstrap (exit status 1): "
        "error initializing configuration 'bad.yaml': route: unknown cluster 'no_such_cluster'"
    )


@pytest.mark.parametrize(
    ("output", "message"),
    [("first\nlast line\n\n", "last line"), ("", "no output")],
)
def test_rejected_bootstrap_without_envoys_marker_keeps_the_last_line(output: str, message: str) -> None:
    verdict = bootstrap_verdict(2, output)
    assert verdict == BootstrapInvalid(f"Envoy rejected the bootstrap (exit status 2): {message}")


@pytest.mark.parametrize(
    ("returncode", "reason"),
    [(None, "bootstrap validation did not finish"), (-9, "bootstrap validation killed by signal 9")],
)
def test_validation_that_never_exited_says_nothing_about_the_bootstrap(
    returncode: int | None, reason: str
) -> None:
    assert bootstrap_verdict(returncode, REJECTED) == ValidationInconclusive(reason)
