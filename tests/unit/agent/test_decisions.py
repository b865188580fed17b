"""The agent's pure decisions after the start: Envoy exits, stale flags, drains, bootstrap verdicts.

The start decision itself (epochs, takeover vs fresh start vs refusal) is tested with the start plan,
in test_startplan.py.
"""

from __future__ import annotations

import pytest

from agent.decisions import (
    HANDSHAKE_TIMEOUT_SECONDS,
    HUNG_PARENT_GRACE_SECONDS,
    INITIALIZING_FLAG,
    LIVE,
    UNKNOWN,
    BootstrapInvalid,
    BootstrapValid,
    Restart,
    Retire,
    Stopped,
    ValidationInconclusive,
    after_envoy_exit,
    bootstrap_verdict,
    drain_progress,
    exit_state,
    handshake_stalled,
    must_clear_initializing,
    parent_vanished_early,
    replaced_envoy_hung,
    stand_in_needed,
)
from tests.unit.agent.states import active


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


def test_a_retired_envoy_is_recorded_retired_with_its_error() -> None:
    state = exit_state(
        active("b", epoch=1), "a", Retire("Envoy killed by signal 9 while draining"), epoch=0, now=5.0
    )
    assert state is not None
    assert (state.slots["a"].phase, state.slots["a"].error) == (
        "retired",
        "Envoy killed by signal 9 while draining",
    )
    assert (state.active_slot, state.epoch) == ("b", 1)
    assert (state.history[-1].event, state.history[-1].slot, state.history[-1].epoch) == ("retired", "a", 0)


def test_a_crashed_envoy_is_recorded_starting_again_at_its_epoch() -> None:
    state = exit_state(active("a", epoch=2), "a", Restart("Envoy exit status 1"), epoch=2, now=5.0)
    assert state is not None
    record = state.slots["a"]
    assert (record.phase, record.epoch, record.error) == ("starting", 2, "Envoy exit status 1")
    assert (state.history[-1].event, state.history[-1].epoch) == ("envoy-crashed", 2)


def test_an_envoy_we_stopped_records_nothing() -> None:
    assert exit_state(active("a", epoch=2), "a", Stopped(), epoch=2, now=5.0) is None


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


@pytest.mark.parametrize(
    ("takeover", "seconds", "answered", "stalled"),
    [
        (True, HANDSHAKE_TIMEOUT_SECONDS, False, True),
        (True, HANDSHAKE_TIMEOUT_SECONDS - 0.1, False, False),
        (True, HANDSHAKE_TIMEOUT_SECONDS * 2, True, False),
        (False, HANDSHAKE_TIMEOUT_SECONDS * 2, False, False),
    ],
)
def test_a_takeover_stalls_only_when_its_envoy_never_got_past_the_handshake(
    takeover: bool, seconds: float, answered: bool, stalled: bool
) -> None:
    assert (
        handshake_stalled(takeover=takeover, seconds_since_spawn=seconds, own_epoch_answered=answered)
        is stalled
    )


@pytest.mark.parametrize(("seconds", "hung"), [(15 + HUNG_PARENT_GRACE_SECONDS, True), (24.9, False)])
def test_a_replaced_envoy_is_hung_well_past_its_parent_shutdown(seconds: float, hung: bool) -> None:
    assert replaced_envoy_hung(seconds_since_replaced=seconds, parent_shutdown_seconds=15) is hung


@pytest.mark.parametrize(
    ("early", "answers", "needed"), [(True, True, True), (False, False, True), (False, True, False)]
)
def test_stand_in_when_the_parent_died_early_or_our_envoy_still_waits_on_it(
    early: bool, answers: bool, needed: bool
) -> None:
    assert stand_in_needed(early=early, own_admin_answers=answers) is needed
