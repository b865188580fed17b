"""Pure decisions of the agent: which epoch, take over or not, what an Envoy exit means.

No I/O, no clock, no environment: the shells (agent/launch.py, agent/supervisor.py, agent/handover.py)
observe the world, call these, and act; agent/startplan.py builds the start plan on `decide_start`.
Envoy facts they rely on (Envoy 1.40, source/server/hot_restart_impl.cc and hot_restarting_*.cc):
the child of epoch N is N+1 with the same base id; socket names only use `epoch % 3`; epoch 0
recreates the shared memory segment; a hot-restart version mismatch makes the child abort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from agent import contract
from agent.contract import Slot
from agent.state import (
    SharedState,
    held_by,
    other_slot,
    replaced_by_other,
    with_event,
    with_hold,
    with_slot,
    with_stopped,
)

if TYPE_CHECKING:  # agent.fence imports this module (socket_id)
    from agent.fence import Fence

LIVE = "LIVE"
# server_info state we did not see because the admin did not answer (its socket proves it runs).
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class LiveEnvoy:
    """An Envoy of this pod that is running now, as the admin API or its hot-restart socket shows."""

    epoch: int
    hot_restart_version: str | None
    state: str


@dataclass(frozen=True)
class Observation:
    """What the supervisor saw under the run-dir lock before starting an Envoy."""

    state: SharedState
    admin: LiveEnvoy | None
    bound_socket_ids: frozenset[int]
    own_hot_restart_version: str
    fence: Fence | None = None  # the run dir's take-over fence (agent/fence.py)


@dataclass(frozen=True)
class FreshStart:
    """No Envoy of the pod runs: start ours at epoch 0 (which recreates the shared memory)."""

    epoch: int = 0


@dataclass(frozen=True)
class TakeOver:
    """Hot-restart from the live Envoy of `parent_epoch`: ours is `epoch` = parent_epoch + 1."""

    epoch: int
    parent_epoch: int


@dataclass(frozen=True)
class Refuse:
    """Never start here: this image's Envoy cannot hot-restart from the live one, or cannot be hitless.

    `failure` is the reason label of the failures metric.
    """

    reason: str
    failure: str = "refused"


@dataclass(frozen=True)
class Wait:
    """Another Envoy is mid-start or unaccounted for: try again later."""

    reason: str


@dataclass(frozen=True)
class StandBy:
    """Never start here: this slot was replaced and its container not reset since (a restart, no request)."""

    reason: str


StartDecision = FreshStart | TakeOver | Refuse | Wait

# Containers of a pod get SIGTERM together when the pod or the node stops; a release recorded this
# close to the active agent's own SIGTERM is part of that stop, not the controller's reset.
POD_STOP_WINDOW_SECONDS = 10.0


def socket_id(epoch: int) -> int:
    """Envoy names its hot-restart sockets by `epoch % 3` (MaxConcurrentProcesses in hot_restarting_base)."""
    return epoch % 3


def live_envoy(observation: Observation) -> LiveEnvoy | None:
    """The Envoy to hot restart from: the admin's answer, else a recorded epoch whose socket is bound."""
    if observation.admin is not None:
        return observation.admin
    state = observation.state
    if state.epoch is None:
        return None
    # The recorded epoch may be dead while its parent still drains (child crashed mid-drain).
    for candidate in (state.epoch, state.epoch - 1):
        if candidate >= 0 and socket_id(candidate) in observation.bound_socket_ids:
            return LiveEnvoy(epoch=candidate, hot_restart_version=state.hot_restart_version, state=UNKNOWN)
    return None


def choose_epoch(live: LiveEnvoy | None) -> int:
    """Epoch for our Envoy: one past the live one, or 0 when no Envoy of ours runs."""
    return 0 if live is None else live.epoch + 1


def decide_start(observation: Observation) -> StartDecision:
    """Fresh start, hot-restart takeover, refusal (incompatible versions) or wait (someone is mid-start)."""
    live = live_envoy(observation)
    if live is None:
        if observation.bound_socket_ids:
            ids = sorted(observation.bound_socket_ids)
            return Wait(f"hot-restart sockets {ids} are bound but no recorded Envoy answers")
        return FreshStart(epoch=choose_epoch(None))
    if (
        live.hot_restart_version is not None
        and live.hot_restart_version != observation.own_hot_restart_version
    ):
        return Refuse(
            f"hot restart version mismatch: live Envoy has {live.hot_restart_version}, "
            f"this image has {observation.own_hot_restart_version}"
        )
    if live.state not in (LIVE, UNKNOWN):
        return Wait(f"the live Envoy (epoch {live.epoch}) is {live.state}, not {LIVE}")
    return TakeOver(epoch=choose_epoch(live), parent_epoch=live.epoch)


def drain_timing_problem(*, drain_seconds: int, parent_shutdown_seconds: int) -> str | None:
    """Why this drain/parent-shutdown pair cannot be hitless, or None (docs/contract.md "Drain timing").

    Envoy starts the parent's drain and the child's parent-shutdown timer together; a request on the
    parent's connections told to close at the end of the drain must still finish before the parent
    exits. Measured (tests/integration/agent/test_drain_margin.py): 1 s / 1 s loses requests, 1 s / 2 s none.
    """
    minimum = drain_seconds + contract.SHUTDOWN_MARGIN_SECONDS
    if parent_shutdown_seconds >= minimum:
        return None
    return (
        f"{contract.ENV_PARENT_SHUTDOWN_SECONDS}={parent_shutdown_seconds} must be at least "
        f"{contract.ENV_DRAIN_SECONDS}={drain_seconds} + {contract.SHUTDOWN_MARGIN_SECONDS}s: the old Envoy "
        "would exit while requests it was draining are still in flight (size it at the drain time plus "
        "the longest request plus 1s)"
    )


def stand_by_reason(state: SharedState, slot: Slot) -> str | None:
    """Why this slot must stand by instead of starting Envoy, or None when it may start.

    The controller asks a slot to serve only by changing its container's image, and it always resets a
    replaced slot to the empty image first: the kubelet stops the replaced agent (SIGTERM), which
    releases the hold (`released_on_sigterm`). A replaced slot whose agent starts again without that
    release is its old container restarting (agent crash, OOM kill, runtime restart): it must never take
    the listeners back, whether an Envoy is live or not (issue 10, state-when-old-slot-restarts.json).
    """
    epoch = held_by(state, slot)
    if epoch is None:
        return None
    return (
        f"slot {slot} was replaced by epoch {epoch} and its container was not reset since: this is "
        "a restart of the replaced container, which stands by; only the controller's image change "
        "after a reset makes it serve"
    )


def released_on_sigterm(state: SharedState, slot: Slot, *, now: float) -> SharedState | None:
    """Our agent got SIGTERM while its slot is held: the controller's reset releases the hold.

    Not when the pod itself is stopping (the active slot drains on its own SIGTERM, or none is active):
    the kubelet then stops every container, which is no request. None: nothing to record.
    """
    if held_by(state, slot) is None:
        return None
    active = state.active_slot
    if active is None or active == slot or state.slots[active].phase == "draining":
        return None
    record = state.slots[slot]
    return with_hold(state, slot, replaced_by_epoch=record.replaced_by_epoch, released_at=now)


def voided_by_pod_stop(state: SharedState, slot: Slot, *, now: float) -> SharedState:
    """The active agent got SIGTERM: a release of the other slot in the last moments was the same stop."""
    other = other_slot(slot)
    record = state.slots[other]
    if record.released_at is None or now - record.released_at > POD_STOP_WINDOW_SECONDS:
        return state
    return with_hold(state, other, replaced_by_epoch=record.replaced_by_epoch, released_at=None)


@dataclass(frozen=True)
class Retire:
    """Our Envoy was replaced and ended its drain (`error` if not by its normal Terminate)."""

    error: str | None


@dataclass(frozen=True)
class Restart:
    """Our Envoy was the active one and crashed: start it again."""

    reason: str


@dataclass(frozen=True)
class Stopped:
    """We stopped our Envoy ourselves (SIGTERM): nothing to do."""

    pass


ExitAction = Retire | Restart | Stopped


def describe_exit(returncode: int) -> str:
    """A Popen returncode in words: 'exit status N' or 'killed by signal N'."""
    return f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"


def after_envoy_exit(
    state: SharedState, slot: Slot, *, epoch: int, returncode: int, stopping: bool
) -> ExitAction:
    """Our Envoy exited: we stopped it, it was replaced (hot-restart Terminate), or it crashed."""
    if stopping:
        return Stopped()
    if replaced_by_other(state, slot, epoch=epoch):
        # Exit 0 is the parent's normal end after Terminate; anything else happened mid-drain.
        return Retire(error=None if returncode == 0 else f"Envoy {describe_exit(returncode)} while draining")
    return Restart(reason=f"Envoy {describe_exit(returncode)}")


def exit_state(
    state: SharedState, slot: Slot, action: ExitAction, *, epoch: int, now: float
) -> SharedState | None:
    """The state after our Envoy of `epoch` exited: retired, crashed (starting again), or None if stopped."""
    if isinstance(action, Retire):
        state = with_stopped(state, slot, epoch=epoch, now=now, error=action.error)
        return with_event(state, now=now, slot=slot, event="retired", epoch=epoch)
    if isinstance(action, Restart):
        state = with_slot(state, slot, now=now, phase="starting", epoch=epoch, error=action.reason)
        return with_event(state, now=now, slot=slot, event="envoy-crashed", epoch=epoch)
    return None


def must_clear_initializing(flags: int, *, live_state: str | None) -> bool:
    """A set INITIALIZING bit is stale when, under the lock, the only other Envoy is already LIVE.

    Envoy clears the bit in HotRestartImpl::drainParentListeners(), i.e. when workers start, before
    it reports LIVE; a child that died during init never clears it (envoy#33446). Only agents start
    Envoys, and only under the run-dir lock, so when we hold the lock no child can be initialising.
    """
    initializing = bool(flags & INITIALIZING_FLAG)
    return initializing and live_state in (LIVE, UNKNOWN, None)


INITIALIZING_FLAG = 0x1


def parent_vanished_early(*, seconds_since_live: float, parent_shutdown_seconds: float) -> bool:
    """The replaced Envoy is gone before our Envoy's Terminate was due: it died, stand in for it."""
    # Our LIVE observation trails the real drain start by a poll interval; keep one second of slack.
    return seconds_since_live < parent_shutdown_seconds - 1.0


def stand_in_needed(*, early: bool, own_admin_answers: bool) -> bool:
    """Bind the vanished parent's socket: it died mid-drain, or our Envoy's main thread still waits on it.

    A child sends the parent a Stats request at every stats flush and blocks its main thread until the
    reply (HotRestartingChild::getParentStats, Blocking::Yes). A parent that hung (SIGSTOP, a stuck main
    thread) and was then killed leaves that wait unanswered: our admin API stops answering, and our
    Terminate timer, on the same thread, never fires. The stand-in's first reply ends the wait.
    """
    return early or not own_admin_answers


# The hot-restart handshake (ShutdownAdmin, then our Envoy binds the admin port) takes about a second;
# a parent that has not answered in this long is hung or stopped (SIGSTOP, a stuck main thread).
HANDSHAKE_TIMEOUT_SECONDS = 20.0
# A replaced Envoy gets Terminate at its parent-shutdown time and exits at once; this much later it is hung.
HUNG_PARENT_GRACE_SECONDS = 10.0


def handshake_stalled(*, takeover: bool, seconds_since_spawn: float, own_epoch_answered: bool) -> bool:
    """Our hot-restart child never got past the handshake with its parent: give up (no retry).

    Envoy's child waits for each reply with a blocking recvmsg and no timeout (hot_restarting_base.cc),
    so only we can bound it. A retry would send a second request to a parent that still holds the first.
    """
    return takeover and not own_epoch_answered and seconds_since_spawn >= HANDSHAKE_TIMEOUT_SECONDS


def takeover_deadline_passed(*, takeover: bool, seconds_since_spawn: float, deadline_seconds: float) -> bool:
    """A hot-restart child is not LIVE `deadline_seconds` after its spawn (docs/contract.md "Take-over
    deadline"): in `xds` mode its control plane is slow or down, and Envoy would wait for LDS/CDS forever."""
    return takeover and seconds_since_spawn >= deadline_seconds


DeadlineAction = Literal["abandon", "resume"]


def at_takeover_deadline(flags: int | None) -> DeadlineAction:
    """What to do with a child stopped (SIGSTOP) at its take-over deadline, by the shm flags word.

    Envoy clears INITIALIZING in HotRestartImpl::drainParentListeners() right after it sent its parent
    DrainListeners (source/server/hot_restart_impl.cc), and only there. Still set: the parent was never
    told to drain (but for the few instructions between that send and the clear), so ending the child
    leaves the parent serving: abandon. Clear: the parent drains already and only this child can take the
    traffic: resume. No segment (None) means no hot restart happened at all: abandon.
    """
    if flags is not None and not flags & INITIALIZING_FLAG:
        return "resume"
    return "abandon"


def replaced_envoy_hung(*, seconds_since_replaced: float, parent_shutdown_seconds: float) -> bool:
    """Our replaced Envoy still runs well past the Terminate its child owed it: hung, end it."""
    return seconds_since_replaced >= parent_shutdown_seconds + HUNG_PARENT_GRACE_SECONDS


@dataclass(frozen=True)
class BootstrapValid:
    """`envoy --mode validate` accepted the bootstrap."""

    pass


@dataclass(frozen=True)
class BootstrapInvalid:
    """Envoy rejected the bootstrap: retrying cannot help."""

    error: str


@dataclass(frozen=True)
class ValidationInconclusive:
    """The validation said nothing about the bootstrap (no exit, a signal, or it could not run)."""

    reason: str


BootstrapVerdict = BootstrapValid | BootstrapInvalid | ValidationInconclusive

# Envoy's validate mode reports a rejected bootstrap as one critical log line (config_validation/server.cc).
_REJECTED_MARKER = "error initializing configuration"


def bootstrap_verdict(returncode: int | None, output: str) -> BootstrapVerdict:
    """`envoy --mode validate` result: exit 0 valid, a non-zero exit invalid, no exit or a signal unknown.

    A signal or timeout says nothing about the bootstrap (OOM kill, overloaded node): retry, do not refuse.
    """
    if returncode == 0:
        return BootstrapValid()
    if returncode is None or returncode < 0:
        what = "did not finish" if returncode is None else describe_exit(returncode)
        return ValidationInconclusive(f"bootstrap validation {what}")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    rejected = [line for line in lines if _REJECTED_MARKER in line]
    if rejected:
        # Drop the "[time][tid][critical][main] [file:line] " prefix: the message is what helps.
        message = rejected[-1][rejected[-1].index(_REJECTED_MARKER) :]
    elif lines:
        message = lines[-1]
    else:
        message = "no output"
    return BootstrapInvalid(f"Envoy rejected the bootstrap ({describe_exit(returncode)}): {message}")


DrainProgress = Literal["wait", "done", "deadline"]


def drain_progress(
    *, active_connections: int | None, seconds_draining: float, drain_seconds: float
) -> DrainProgress:
    """SIGTERM drain: done at zero downstream connections, else wait until the drain deadline."""
    if active_connections == 0:
        return "done"
    if seconds_draining >= drain_seconds:
        return "deadline"
    return "wait"
