"""The start plan: which epoch and base id; take over, refuse, wait or start fresh; what each step records.

All pure: `decide_start` (agent/decisions.py) picks the epoch, `plan_start` adds what the launch needs.
"""

from __future__ import annotations

import pytest

from agent import contract
from agent.config import AgentConfig, load_config
from agent.decisions import (
    LIVE,
    UNKNOWN,
    FreshStart,
    LiveEnvoy,
    Observation,
    Refuse,
    TakeOver,
    Wait,
    choose_epoch,
    decide_start,
    live_envoy,
    socket_id,
)
from agent.startplan import (
    Launch,
    StartPlan,
    failed_attempt_state,
    live_state,
    plan_start,
    refused_state,
    spawned_state,
)
from agent.state import initial_state, with_active, with_slot
from tests.unit.agent.states import OURS, active, observe

ENVOY_VERSION = "1.40.0"


def plan_for(observation: Observation, slot: str, **environ: str) -> StartPlan:
    """The plan of an agent in `slot` whose environment adds `environ` to the contract defaults."""
    config: AgentConfig = load_config({contract.ENV_SLOT: slot, **environ})
    return plan_start(observation, config, envoy_version=ENVOY_VERSION)


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


# -- the plan around the decision ------------------------------------------------------------------


def test_fresh_pod_plan_starts_epoch_zero_with_the_configured_base_id_and_timings() -> None:
    plan = plan_for(
        observe(initial_state(7)),
        "a",
        **{
            contract.ENV_BASE_ID: "7",
            contract.ENV_DRAIN_SECONDS: "3",
            contract.ENV_PARENT_SHUTDOWN_SECONDS: "5",
        },
    )
    assert plan == Launch(
        decision=FreshStart(epoch=0),
        slot="a",
        base_id=7,
        drain_seconds=3,
        parent_shutdown_seconds=5,
        envoy_version=ENVOY_VERSION,
        hot_restart_version=OURS,
        parent_slot=None,
        previous_slot=None,
        live_state=None,
    )
    assert (plan.epoch, plan.takeover, plan.parent_epoch, plan.phase) == (0, False, None, "starting")


def test_takeover_plan_names_the_other_slot_as_parent_and_reports_taking_over() -> None:
    observation = observe(active("a", epoch=4), admin=LiveEnvoy(4, OURS, LIVE), bound=frozenset({1}))
    plan = plan_for(observation, "b")
    assert isinstance(plan, Launch)
    assert plan.decision == decide_start(observation) == TakeOver(epoch=5, parent_epoch=4)
    assert (plan.epoch, plan.takeover, plan.parent_epoch, plan.phase) == (5, True, 4, "taking-over")
    assert (plan.slot, plan.parent_slot, plan.previous_slot, plan.live_state) == ("b", "a", "a", LIVE)
    assert plan.base_id == contract.BASE_ID


def test_restart_after_a_crash_mid_drain_takes_over_from_the_other_slots_draining_parent() -> None:
    # b (epoch 1) took over from a (epoch 0) and crashed while a still drains: b restarts at 1 from 0.
    state = with_active(
        active("a", epoch=0), "b", now=2.0, epoch=1, pid=11, envoy_version="1.40.0", hot_restart_version=OURS
    )
    state = with_slot(state, "b", now=3.0, phase="starting", epoch=1, error="Envoy killed by signal 9")
    plan = plan_for(observe(state, bound=frozenset({socket_id(0)})), "b")
    assert isinstance(plan, Launch)
    assert plan.decision == TakeOver(epoch=1, parent_epoch=0)
    assert (plan.parent_slot, plan.live_state) == ("a", None)


def test_a_parent_whose_epoch_no_slot_records_is_not_ours_to_retire() -> None:
    plan = plan_for(observe(active("a", epoch=1), admin=LiveEnvoy(6, OURS, LIVE)), "b")
    assert isinstance(plan, Launch)
    assert (plan.epoch, plan.parent_epoch, plan.parent_slot) == (7, 6, None)


def test_the_admins_state_is_kept_for_the_initializing_check() -> None:
    plan = plan_for(observe(active("a", epoch=2), bound=frozenset({socket_id(2)})), "b")
    assert isinstance(plan, Launch)
    assert plan.live_state is None, "no admin answer: the socket proved it runs"
    plan = plan_for(observe(active("a"), admin=LiveEnvoy(0, OURS, UNKNOWN)), "b")
    assert isinstance(plan, Launch) and plan.live_state == UNKNOWN


@pytest.mark.parametrize(
    "observation",
    [
        observe(active(), admin=LiveEnvoy(0, "10.104", LIVE)),
        observe(active(), admin=LiveEnvoy(0, OURS, "INITIALIZING")),
        observe(initial_state(7), bound=frozenset({2})),
    ],
    ids=["refuse", "wait-initializing", "wait-unknown-sockets"],
)
def test_refusals_and_waits_are_the_decision_itself(observation: Observation) -> None:
    plan = plan_for(observation, "b")
    assert isinstance(plan, Refuse | Wait)
    assert plan == decide_start(observation)


# -- what each step records ------------------------------------------------------------------------


def takeover_plan() -> Launch:
    plan = plan_for(observe(active("a", epoch=0), admin=LiveEnvoy(0, OURS, LIVE)), "b")
    assert isinstance(plan, Launch)
    return plan


def test_refused_slot_is_failed_with_the_reason_and_the_active_slot_untouched() -> None:
    state = refused_state(active("a"), "b", reason="hot restart version mismatch", now=5.0)
    assert (state.slots["b"].phase, state.slots["b"].error) == ("failed", "hot restart version mismatch")
    assert (state.active_slot, state.epoch, state.slots["a"].phase) == ("a", 0, "serving")


def test_spawned_envoy_is_recorded_in_the_launch_phase_with_its_epoch_and_pid() -> None:
    state = spawned_state(active("a"), takeover_plan(), pid=42, now=5.0)
    record = state.slots["b"]
    assert (record.phase, record.epoch, record.pid, record.error) == ("taking-over", 1, 42, None)
    assert state.active_slot == "a", "not active before it is LIVE"


def test_live_after_a_takeover_makes_us_active_and_the_parent_slot_drain() -> None:
    state = live_state(active("a"), takeover_plan(), pid=42, now=5.0)
    assert (state.active_slot, state.epoch) == ("b", 1)
    assert (state.envoy_version, state.hot_restart_version) == (ENVOY_VERSION, OURS)
    assert (state.slots["b"].phase, state.slots["b"].pid) == ("serving", 42)
    assert state.slots["a"].phase == "draining"


def test_live_after_a_fresh_start_retires_the_previously_active_slot() -> None:
    # a was recorded active but its Envoy is gone (no admin, no socket): b starts fresh at epoch 0.
    launch = plan_for(observe(active("a", epoch=3)), "b")
    assert isinstance(launch, Launch) and launch.decision == FreshStart(epoch=0)
    state = live_state(active("a", epoch=3), launch, pid=42, now=5.0)
    assert (state.active_slot, state.epoch) == ("b", 0)
    assert state.slots["a"].phase == "retired"
    assert state.slots["a"].error == "its Envoy was gone when b started"


def test_live_after_a_fresh_start_of_the_same_slot_retires_nothing() -> None:
    launch = plan_for(observe(active("a", epoch=3)), "a")
    assert isinstance(launch, Launch) and launch.previous_slot == "a"
    state = live_state(active("a", epoch=3), launch, pid=42, now=5.0)
    assert (state.active_slot, state.epoch, state.slots["a"].phase) == ("a", 0, "serving")
    assert state.slots["b"].phase is None


@pytest.mark.parametrize(("permanent", "phase"), [(True, "failed"), (False, "taking-over")])
def test_a_failed_attempt_is_failed_only_when_permanent(permanent: bool, phase: str) -> None:
    state = failed_attempt_state(active("a"), takeover_plan(), reason="boom", permanent=permanent, now=5.0)
    record = state.slots["b"]
    assert (record.phase, record.epoch, record.error) == (phase, 1, "boom")
    assert state.active_slot == "a"
