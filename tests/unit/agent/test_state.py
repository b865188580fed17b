"""The shared state model: pure edits, roles, readiness, and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from agent import contract
from agent.state import (
    HISTORY_LIMIT,
    SharedState,
    StateFormatError,
    as_slot,
    from_json,
    initial_state,
    is_ready,
    other_slot,
    replaced_by_other,
    role_of,
    slot_of_epoch,
    to_json,
    with_active,
    with_event,
    with_slot,
    with_stopped,
)


def serving(slot: str, epoch: int, now: float = 10.0, state: SharedState | None = None) -> SharedState:
    return with_active(
        state or initial_state(7),
        as_slot(slot),
        now=now,
        epoch=epoch,
        pid=100 + epoch,
        envoy_version="v",
        hot_restart_version="11.104",
    )


def test_since_moves_only_when_the_phase_changes() -> None:
    state = with_slot(initial_state(7), "a", now=1.0, phase="starting", epoch=0)
    state = with_slot(state, "a", now=2.0, phase="starting", epoch=0, error="retry")
    assert state.slots["a"].since == 1.0
    state = with_slot(state, "a", now=3.0, phase="serving", epoch=0)
    assert state.slots["a"].since == 3.0


def test_takeover_marks_the_previous_active_slot_draining() -> None:
    state = serving("b", 1, now=20.0, state=serving("a", 0))
    assert (state.active_slot, state.epoch) == ("b", 1)
    assert state.slots["b"].phase == "serving"
    assert state.slots["a"].phase == "draining"
    assert state.slots["a"].epoch == 0
    assert state.slots["a"].since == 20.0


def test_a_retired_slot_stays_retired_when_the_other_takes_over_again() -> None:
    state = serving("b", 1, state=serving("a", 0))
    state = with_stopped(state, "a", epoch=0, now=30.0, error=None)
    state = serving("a", 2, now=40.0, state=state)
    assert state.slots["b"].phase == "draining"
    assert state.slots["a"].phase == "serving"


def test_stopping_the_active_slot_clears_active_slot() -> None:
    state = with_stopped(serving("a", 0), "a", epoch=0, now=5.0, error=None)
    assert state.active_slot is None
    assert state.slots["a"].phase == "retired"


@pytest.mark.parametrize(
    ("slot", "running", "role"),
    [("b", True, "active"), ("b", False, "standby"), ("a", False, "retired"), ("a", True, "retired")],
)
def test_roles(slot: str, running: bool, role: str) -> None:
    state = with_stopped(serving("b", 1, state=serving("a", 0)), "a", epoch=0, now=1.0, error=None)
    assert role_of(state, as_slot(slot), envoy_running=running) == role
    assert role in contract.ROLES


def test_ready_needs_active_serving_and_running() -> None:
    state = serving("a", 0)
    assert is_ready(state, "a", envoy_running=True)
    assert not is_ready(state, "a", envoy_running=False)
    assert not is_ready(state, "b", envoy_running=True)
    assert not is_ready(with_slot(state, "a", now=1.0, phase="draining"), "a", envoy_running=True)


def test_history_is_bounded_and_keeps_the_newest() -> None:
    state = initial_state(7)
    for i in range(HISTORY_LIMIT + 5):
        state = with_event(state, now=float(i), slot="a", event=f"e{i}")
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1].event == f"e{HISTORY_LIMIT + 4}"


def test_json_round_trip_keeps_everything() -> None:
    state = serving("b", 1, state=serving("a", 0))
    state = with_event(state, now=3.0, slot="b", event="envoy-live", epoch=1, detail="0.4s")
    text = json.dumps(to_json(state))
    assert from_json(json.loads(text)) == state


def test_json_has_the_contract_fields() -> None:
    data = to_json(serving("a", 0))
    for name in ("active_slot", "epoch", "base_id", "hot_restart_version", "envoy_version", "slots"):
        assert name in data
    assert set(data["slots"]) == set(contract.SLOTS)
    assert set(data["slots"]["a"]) == {
        "phase",
        "since",
        "pid",
        "epoch",
        "error",
        "replaced_by_epoch",
        "released_at",
    }
    assert (data["schema"], data["schemaVersion"]) == (1, "1.4")


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"schema": 99, "base_id": 7},
        {"schema": 1},
        {"schema": 1, "base_id": "7"},
        {"schema": 1, "base_id": 7, "active_slot": "c"},
        {"schema": 1, "base_id": 7, "slots": {"a": {"phase": "dancing"}}},
        {"schema": 1, "base_id": 7, "history": [{"slot": "a"}]},
    ],
)
def test_malformed_state_is_rejected(bad: object) -> None:
    with pytest.raises(StateFormatError):
        from_json(bad)


def test_slot_names() -> None:
    assert other_slot("a") == "b" and other_slot("b") == "a"
    with pytest.raises(ValueError, match="slot must be one of"):
        as_slot("c")


def test_a_replaced_slot_that_still_drains_reports_retired() -> None:
    state = serving("b", 1, state=serving("a", 0))
    assert state.slots["a"].phase == "draining"
    assert role_of(state, "a", envoy_running=True) == "retired"


def test_draining_on_sigterm_while_active_is_still_active() -> None:
    state = with_slot(serving("a", 0), "a", now=2.0, phase="draining", epoch=0)
    assert role_of(state, "a", envoy_running=True) == "active"


def test_slot_of_epoch_names_the_other_slot_only() -> None:
    state = serving("b", 1, state=serving("a", 0))
    assert slot_of_epoch(state, 0, besides="b") == "a"
    assert slot_of_epoch(state, 1, besides="a") == "b"
    assert slot_of_epoch(state, 1, besides="b") is None
    assert slot_of_epoch(state, 7, besides="b") is None


@pytest.mark.parametrize(("slot", "epoch", "replaced"), [("a", 0, True), ("b", 1, False), ("b", 0, True)])
def test_replaced_by_other(slot: str, epoch: int, replaced: bool) -> None:
    state = serving("b", 1, state=serving("a", 0))
    assert replaced_by_other(state, as_slot(slot), epoch=epoch) is replaced


def test_stopping_an_older_epoch_leaves_a_newer_agent_of_the_slot_alone() -> None:
    # a(0) -> b(1) -> a(2): the first a's Envoy exits after the second a took over.
    state = serving("a", 2, state=serving("b", 1, state=serving("a", 0)))
    assert with_stopped(state, "a", epoch=0, now=9.0, error=None) == state


def test_stopping_a_slot_that_is_no_longer_active_keeps_the_active_slot() -> None:
    state = serving("b", 1, state=serving("a", 0))
    stopped = with_stopped(state, "a", epoch=0, now=9.0, error="killed")
    assert (stopped.active_slot, stopped.slots["a"].phase, stopped.slots["a"].error) == (
        "b",
        "retired",
        "killed",
    )
