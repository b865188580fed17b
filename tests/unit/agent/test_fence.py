"""The take-over fence's rules (agent/fence.py): when the serving agent refuses a fence, which starts a
fence stops, and the request and file formats. All pure; the lock and the file are the desk's
(agent/fencing.py) and are proven in tests/integration/agent/test_fence.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent import contract
from agent.config import load_config
from agent.decisions import LIVE, LiveEnvoy, Refuse, TakeOver, socket_id
from agent.fence import Fence, FenceFormatError, fenced_reason, parse_fence, parse_request, refusal
from agent.startplan import Launch, plan_start
from agent.state import SharedState, with_slot
from tests.unit.agent.states import OURS, active, observe

NONE_BOUND: frozenset[int] = frozenset()
B_RUNS = frozenset({socket_id(1)})  # b's Envoy of epoch 1 holds its hot-restart socket
FENCE = Fence(slot="b", token="b:1@2026-11-30T01:51:37Z", parent_epoch=0, fenced_at=5.0)


def taking_over(state: SharedState, phase: str = "taking-over", epoch: int = 1) -> SharedState:
    """b's new agent recorded its take-over of `state`'s active Envoy."""
    return with_slot(state, "b", now=2.0, phase=phase, epoch=epoch)  # type: ignore[arg-type]


def test_a_standby_that_has_not_begun_may_be_fenced() -> None:
    assert refusal(active("a", 0), own_slot="a", serving=True, slot="b", bound_socket_ids=NONE_BOUND) is None


@pytest.mark.parametrize("phase", ["starting", "taking-over", "serving"])
def test_a_take_over_that_began_refuses_the_fence(phase: str) -> None:
    state = taking_over(active("a", 0), phase)
    why = refusal(state, own_slot="a", serving=True, slot="b", bound_socket_ids=B_RUNS | {socket_id(0)})
    assert why is not None and "began its take-over" in why and phase in why


def test_a_begun_take_over_whose_envoy_is_gone_may_be_fenced() -> None:
    # Its agent crashed, or failed an attempt it will retry: no Envoy of b runs; fencing stops the retry
    # (a crash-looping target is rolled back, not left until TakeOverStuck).
    state = taking_over(active("a", 0))
    assert refusal(state, own_slot="a", serving=True, slot="b", bound_socket_ids=frozenset({0})) is None


def test_a_completed_take_over_refuses_the_fence() -> None:
    state = active("b", 1, state=active("a", 0))
    why = refusal(state, own_slot="a", serving=False, slot="b", bound_socket_ids=B_RUNS)
    assert why is not None and "active slot" in why


def test_a_take_over_record_of_an_earlier_upgrade_does_not_refuse() -> None:
    # b took over at epoch 1, a took it back at 2; b's record left `taking-over` at 1 is stale.
    state = taking_over(active("a", 2, state=active("b", 1, state=active("a", 0))), epoch=1)
    assert refusal(state, own_slot="a", serving=True, slot="b", bound_socket_ids=B_RUNS) is None


def test_a_failed_take_over_may_be_fenced() -> None:
    state = with_slot(active("a", 0), "b", now=2.0, phase="failed", epoch=1, error="deadline")
    assert refusal(state, own_slot="a", serving=True, slot="b", bound_socket_ids=B_RUNS) is None


def test_no_fence_while_no_envoy_of_ours_serves() -> None:
    # A rollback would leave the pod without an Envoy: the new slot's start is the only way back.
    why = refusal(active("a", 0), own_slot="a", serving=False, slot="b", bound_socket_ids=NONE_BOUND)
    assert why is not None and "rolling back would leave the pod without one" in why


def test_an_agent_never_fences_its_own_slot() -> None:
    why = refusal(active("a", 0), own_slot="a", serving=True, slot="a", bound_socket_ids=NONE_BOUND)
    assert why is not None and "own slot" in why


def test_a_fence_stops_its_slot_and_no_other() -> None:
    state = active("a", 0)
    why = fenced_reason(FENCE, state, "b")
    assert why is not None and why.startswith("fenced:") and FENCE.token in why
    assert fenced_reason(FENCE, state, "a") is None
    assert fenced_reason(None, state, "b") is None


def test_a_fence_never_stops_the_active_slots_agent() -> None:
    # A restarted agent of the serving slot is not a take-over.
    assert fenced_reason(FENCE, active("b", 1, state=active("a", 0)), "b") is None


def plan(state: SharedState, fence: Fence | None) -> object:
    observation = replace(
        observe(state, admin=LiveEnvoy(epoch=0, hot_restart_version=OURS, state=LIVE)), fence=fence
    )
    return plan_start(observation, load_config({contract.ENV_SLOT: "b"}), envoy_version="1.40.0")


def test_a_fenced_slot_refuses_to_start_with_reason_fenced() -> None:
    refused = plan(active("a", 0), FENCE)
    assert isinstance(refused, Refuse) and refused.failure == "fenced"
    assert refused.reason.startswith("fenced:")


def test_without_a_fence_of_its_slot_the_take_over_goes_ahead() -> None:
    for fence in (None, replace(FENCE, slot="a")):
        launch = plan(active("a", 0), fence)
        assert isinstance(launch, Launch) and launch.decision == TakeOver(epoch=1, parent_epoch=0)


def test_fence_documents_round_trip_and_malformed_ones_are_refused() -> None:
    assert parse_fence(FENCE.to_json()) == FENCE
    assert parse_request({"slot": "b", "token": "t"}) == ("b", "t")
    bad: object
    for bad in (None, [], {"slot": "c", "token": "t"}, {"slot": "b", "token": ""}, {"slot": "b"}):
        with pytest.raises(FenceFormatError):
            parse_request(bad)
    for bad_fence in ({**FENCE.to_json(), "fenced_at": "x"}, {**FENCE.to_json(), "parent_epoch": True}):
        with pytest.raises(FenceFormatError):
            parse_fence(bad_fence)
