"""The replaced slot never takes the listeners back unless the controller asked (docs/contract.md "The
replaced slot"; issue 10, case `state-when-old-slot-restarts.json`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import contract
from agent.config import load_config
from agent.decisions import (
    LIVE,
    POD_STOP_WINDOW_SECONDS,
    LiveEnvoy,
    StandBy,
    TakeOver,
    released_on_sigterm,
    stand_by_reason,
    voided_by_pod_stop,
)
from agent.startplan import Launch, StartPlan, live_state, plan_start, standby_state
from agent.state import SharedState, from_json, held_by, initial_state, with_slot, with_stopped
from tests.unit.agent.states import OURS, active, observe

CASE = Path(__file__).parent / "fixtures" / "state-when-old-slot-restarts.json"


def case_state() -> SharedState:
    """The run dir's state when the replaced container restarts before its reset (a schema 1.0 file)."""
    return from_json(json.loads(CASE.read_text()))


def plan(state: SharedState, slot: str, *, live_epoch: int | None) -> StartPlan:
    admin = None if live_epoch is None else LiveEnvoy(live_epoch, OURS, LIVE)
    bound = frozenset() if live_epoch is None else frozenset({live_epoch % 3})
    config = load_config({contract.ENV_SLOT: slot})
    return plan_start(observe(state, admin=admin, bound=bound), config, envoy_version="1.40.0")


def replaced(slot: str = "a") -> SharedState:
    """a served epoch 0, then b took over at epoch 1 (or the reverse for slot b)."""
    other = "b" if slot == "a" else "a"
    return active(other, 1, state=active(slot, 0))


@pytest.mark.parametrize("live_epoch", [1, None], ids=["new-envoy-live", "no-envoy-live"])
def test_the_case_the_restarted_old_slot_stands_by(live_epoch: int | None) -> None:
    decided = plan(case_state(), "a", live_epoch=live_epoch)
    assert isinstance(decided, StandBy), decided
    assert "replaced by epoch 1" in decided.reason and "not reset" in decided.reason


def test_the_case_the_serving_slot_is_not_held() -> None:
    state = case_state()
    assert held_by(state, "b") is None
    assert held_by(state, "a") == 1


def test_a_takeover_holds_the_slot_it_replaced_and_frees_its_own() -> None:
    state = replaced("a")
    assert (held_by(state, "a"), held_by(state, "b")) == (1, None)
    released = released_on_sigterm(state, "a", now=50.0)
    assert released is not None
    state = active("a", 2, state=released)
    assert (held_by(state, "a"), held_by(state, "b")) == (None, 2)
    assert state.slots["a"].replaced_by_epoch is None and state.slots["a"].released_at is None


def test_a_fresh_start_holds_the_slot_whose_envoy_was_gone() -> None:
    # Scenario 5: a's Envoy died; b, asked by the controller, starts at epoch 0 and becomes the owner.
    before = active("a", 0)
    launch = plan(before, "b", live_epoch=None)
    assert isinstance(launch, Launch) and not launch.takeover
    after = live_state(before, launch, pid=3, now=9.0)
    assert (after.active_slot, held_by(after, "a")) == ("b", 0)
    assert isinstance(plan(after, "a", live_epoch=0), StandBy)


def test_the_controllers_reset_releases_the_hold_and_the_next_start_takes_over() -> None:
    state = with_stopped(replaced("a"), "a", epoch=0, now=30.0, error=None)
    released = released_on_sigterm(state, "a", now=40.0)
    assert released is not None and released.slots["a"].released_at == 40.0
    assert stand_by_reason(released, "a") is None
    decided = plan(released, "a", live_epoch=1)
    assert isinstance(decided, Launch) and decided.decision == TakeOver(epoch=2, parent_epoch=1)


def test_sigterm_to_a_slot_that_is_not_held_records_nothing() -> None:
    assert released_on_sigterm(active("a", 0), "a", now=5.0) is None
    assert released_on_sigterm(initial_state(7), "b", now=5.0) is None


@pytest.mark.parametrize("stopping", ["active-draining", "none-active"])
def test_sigterm_while_the_pod_stops_is_no_release(stopping: str) -> None:
    state = replaced("a")
    if stopping == "active-draining":
        state = with_slot(state, "b", now=20.0, phase="draining", epoch=1)
    else:
        state = with_stopped(state, "b", epoch=1, now=20.0, error=None)
        assert state.active_slot is None
    assert released_on_sigterm(state, "a", now=21.0) is None


@pytest.mark.parametrize(
    ("seconds_later", "still_released"), [(1.0, False), (POD_STOP_WINDOW_SECONDS + 1, True)]
)
def test_the_active_agents_sigterm_voids_a_release_of_the_same_pod_stop(
    seconds_later: float, still_released: bool
) -> None:
    released = released_on_sigterm(replaced("a"), "a", now=100.0)
    assert released is not None
    after = voided_by_pod_stop(released, "b", now=100.0 + seconds_later)
    assert (after.slots["a"].released_at is not None) is still_released
    assert after.slots["a"].replaced_by_epoch == 1


@pytest.mark.parametrize(("bound", "phase"), [(frozenset(), "retired"), (frozenset({0}), "draining")])
def test_standing_by_retires_a_drain_whose_envoy_died_with_the_container(
    bound: frozenset[int], phase: str
) -> None:
    state = standby_state(case_state(), "a", bound_socket_ids=bound, now=300.0)
    assert state.slots["a"].phase == phase
    assert held_by(state, "a") == 1, "standing by keeps the hold"
    assert state.active_slot == "b"


def test_a_held_slot_that_was_mid_start_is_recorded_retired() -> None:
    state = with_slot(replaced("a"), "a", now=20.0, phase="starting", epoch=0, error="Envoy crashed")
    after = standby_state(state, "a", bound_socket_ids=frozenset(), now=21.0)
    assert after.slots["a"].phase == "retired"
