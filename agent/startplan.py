"""The start plan: what one start attempt does, decided from what the agent saw under the run-dir lock.

Pure: no I/O, no clock (callers pass `now`), no environment, no processes. agent/launch.py observes the
world (state file, admin /server_info, bound hot-restart sockets), calls `plan_start`, carries the plan
out, and records each step with the state edits below. Whether this slot may start at all is
`stand_by_reason` (a replaced slot whose container was not reset stands by); which epoch and whether to
take over, refuse or wait is `decide_start` (agent/decisions.py); this module adds what the launch needs
around it: the base id and timings of the Envoy to spawn, the phase to report, which slot we take over
from, and what the state file says after each step.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.config import AgentConfig
from agent.contract import AgentPhase, Slot
from agent.decisions import (
    FreshStart,
    Observation,
    Refuse,
    StandBy,
    TakeOver,
    Wait,
    decide_start,
    drain_timing_problem,
    socket_id,
    stand_by_reason,
)
from agent.fence import fenced_reason
from agent.state import SharedState, slot_of_epoch, with_active, with_slot, with_stopped


@dataclass(frozen=True)
class Launch:
    """Spawn our Envoy: a fresh start (epoch 0) or a hot-restart takeover (the live Envoy's epoch + 1).

    `decision` is kept whole: its text is what the logs and the state history show.
    """

    decision: FreshStart | TakeOver
    slot: Slot
    base_id: int
    drain_seconds: int
    parent_shutdown_seconds: int
    # Of this image's Envoy: what the state file records once it is LIVE.
    envoy_version: str
    hot_restart_version: str
    # The other slot when its recorded Envoy is the one we take over from (None: not ours to retire).
    parent_slot: Slot | None
    # The active slot recorded before this start; after a fresh start its Envoy is known to be gone.
    previous_slot: Slot | None
    # The live Envoy's /server_info state (None: the admin did not answer), for the INITIALIZING check.
    live_state: str | None

    @property
    def epoch(self) -> int:
        """The `--restart-epoch` of the Envoy to spawn."""
        return self.decision.epoch

    @property
    def takeover(self) -> bool:
        """True when our Envoy hot-restarts from a live one (same base id, its epoch + 1)."""
        return isinstance(self.decision, TakeOver)

    @property
    def parent_epoch(self) -> int | None:
        """The epoch of the Envoy we take over from, or None for a fresh start."""
        return self.decision.parent_epoch if isinstance(self.decision, TakeOver) else None

    @property
    def phase(self) -> AgentPhase:
        """The phase reported while this start is under way."""
        return "taking-over" if self.takeover else "starting"


StartPlan = Launch | Refuse | Wait | StandBy


def plan_start(observation: Observation, config: AgentConfig, *, envoy_version: str) -> StartPlan:
    """Launch (fresh start or takeover), Refuse (drain timing that cannot be hitless, a fence of the
    controller's rollback on this slot, incompatible hot-restart versions), Wait (mid-start) or
    StandBy (a replaced slot restarted before its reset)."""
    timing = drain_timing_problem(
        drain_seconds=config.drain_seconds, parent_shutdown_seconds=config.parent_shutdown_seconds
    )
    if timing is not None:
        return Refuse(timing, failure="bad_config")
    fenced = fenced_reason(observation.fence, observation.state, config.slot)
    if fenced is not None:
        return Refuse(fenced, failure="fenced")
    held = stand_by_reason(observation.state, config.slot)
    if held is not None:
        return StandBy(held)
    decision = decide_start(observation)
    if isinstance(decision, Refuse | Wait):
        return decision
    state = observation.state
    parent_slot = (
        slot_of_epoch(state, decision.parent_epoch, besides=config.slot)
        if isinstance(decision, TakeOver)
        else None
    )
    return Launch(
        decision=decision,
        slot=config.slot,
        base_id=config.base_id,
        drain_seconds=config.drain_seconds,
        parent_shutdown_seconds=config.parent_shutdown_seconds,
        envoy_version=envoy_version,
        hot_restart_version=observation.own_hot_restart_version,
        parent_slot=parent_slot,
        previous_slot=state.active_slot,
        live_state=None if observation.admin is None else observation.admin.state,
    )


def refused_state(state: SharedState, slot: Slot, *, reason: str, now: float) -> SharedState:
    """Our slot failed for good: this image cannot hot-restart from the live Envoy."""
    return with_slot(state, slot, now=now, phase="failed", error=reason)


def standby_state(
    state: SharedState, slot: Slot, *, bound_socket_ids: frozenset[int], now: float
) -> SharedState:
    """We stand by: recorded, and a drain our Envoy can no longer finish is over (it died with us).

    A `draining` record whose Envoy's hot-restart socket is gone means the old Envoy died with its
    container; the new slot's agent normally records that first (agent/handover.py).
    """
    record = state.slots[slot]
    if record.phase == "draining" and (
        record.epoch is None or socket_id(record.epoch) not in bound_socket_ids
    ):
        state = with_stopped(
            state, slot, epoch=record.epoch, now=now, error="its Envoy died with its container mid-drain"
        )
    elif record.phase not in ("draining", "retired"):
        state = with_slot(state, slot, now=now, phase="retired", epoch=record.epoch, error=record.error)
    return state


def preparing_state(state: SharedState, launch: Launch, *, now: float) -> SharedState:
    """About to spawn a takeover: the other agent stops serving its Envoy's stats from now on."""
    return with_slot(state, launch.slot, now=now, phase=launch.phase, epoch=launch.epoch)


def spawned_state(state: SharedState, launch: Launch, *, pid: int, now: float) -> SharedState:
    """Our Envoy process exists and is initialising."""
    return with_slot(state, launch.slot, now=now, phase=launch.phase, epoch=launch.epoch, pid=pid)


def live_state(state: SharedState, launch: Launch, *, pid: int, now: float) -> SharedState:
    """Our Envoy is LIVE and owns the listeners; the slot it replaced starts draining or is gone."""
    slot = launch.slot
    state = with_active(
        state,
        slot,
        now=now,
        epoch=launch.epoch,
        pid=pid,
        envoy_version=launch.envoy_version,
        hot_restart_version=launch.hot_restart_version,
    )
    previous = launch.previous_slot
    if not launch.takeover and previous is not None and previous != slot:
        # A fresh start means no Envoy of the previously active slot was running any more.
        state = with_stopped(
            state,
            previous,
            epoch=state.slots[previous].epoch,
            now=now,
            error=f"its Envoy was gone when {slot} started",
        )
    return state


def failed_attempt_state(
    state: SharedState, launch: Launch, *, reason: str, permanent: bool, now: float
) -> SharedState:
    """One attempt failed: `failed` for good when permanent, else still in the launch's phase (retried)."""
    phase: AgentPhase = "failed" if permanent else launch.phase
    return with_slot(state, launch.slot, now=now, phase=phase, epoch=launch.epoch, error=reason)
