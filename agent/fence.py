"""The take-over fence (docs/contract.md "The take-over fence"): pure rules, no I/O, no clock.

Before the controller rolls back a standby image change it asks the active agent to fence the standby
slot. Under the run-dir lock that agent either refuses (the standby already began its take-over, or no
Envoy of ours serves, so a rollback could leave the pod without one) or records the fence in
FENCE_FILE; a new agent in a fenced slot, under the same lock and before it spawns Envoy, refuses to
start. Since a take-over holds the lock from its observation until its Envoy is LIVE or dead, exactly
one of the two happens first: the fence, and no Envoy of that slot ever starts; or the take-over, and
the fence is refused. The controller lifts a slot's fence before it next sets that slot to an image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from agent.contract import Slot
from agent.decisions import socket_id
from agent.state import SharedState, as_slot


class FenceJSON(TypedDict):
    """FENCE_FILE and `fence` in GET /status: who fenced which slot's take-over, and when."""

    slot: Slot
    token: str
    parent_epoch: int | None
    fenced_at: float


class FenceFormatError(ValueError):
    """A fence document (file or request body) is not what the contract says."""


@dataclass(frozen=True)
class Fence:
    """`slot` starts no Envoy: the controller's upgrade attempt `token` was rolled back; recorded while
    the Envoy of `parent_epoch` served, at `fenced_at` (seconds since the epoch)."""

    slot: Slot
    token: str
    parent_epoch: int | None
    fenced_at: float

    def to_json(self) -> FenceJSON:
        return FenceJSON(
            slot=self.slot, token=self.token, parent_epoch=self.parent_epoch, fenced_at=self.fenced_at
        )


def parse_fence(data: object) -> Fence:
    """A Fence from FENCE_FILE's decoded JSON; FenceFormatError when it is not one."""
    if not isinstance(data, dict):
        raise FenceFormatError("a fence is a JSON object")
    token, epoch, at = data.get("token"), data.get("parent_epoch"), data.get("fenced_at")
    if not isinstance(token, str) or not token:
        raise FenceFormatError("fence token must be a non-empty string")
    if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
        raise FenceFormatError("fence parent_epoch must be an integer or null")
    if not isinstance(at, int | float) or isinstance(at, bool):
        raise FenceFormatError("fence fenced_at must be a number")
    try:
        slot = as_slot(str(data.get("slot")))
    except ValueError as error:
        raise FenceFormatError(str(error)) from None
    return Fence(slot=slot, token=token, parent_epoch=epoch, fenced_at=float(at))


def parse_request(data: object) -> tuple[Slot, str]:
    """(slot, token) of a `POST /fence` body `{"slot": "b", "token": "..."}`; FenceFormatError if not."""
    if not isinstance(data, dict):
        raise FenceFormatError('the body is a JSON object {"slot": ..., "token": ...}')
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > 256:
        raise FenceFormatError("token must be a non-empty string of at most 256 characters")
    try:
        return as_slot(str(data.get("slot"))), token
    except ValueError as error:
        raise FenceFormatError(str(error)) from None


TAKE_OVER_PHASES = ("starting", "taking-over", "serving")


def refusal(
    state: SharedState, *, own_slot: Slot, serving: bool, slot: Slot, bound_socket_ids: frozenset[int]
) -> str | None:
    """Why the agent of `own_slot` must not fence `slot`'s take-over, or None when it may (lock held).

    `serving`: our Envoy runs and we report `serving`; `bound_socket_ids`: the hot-restart socket ids
    bound in the pod (agent/hotrestart.py). Refused: a take-over of `slot` that completed (it is active),
    or that began (its record is `starting`/`taking-over`/`serving` at an epoch past the active one) and
    whose Envoy may still run (that epoch's socket is bound); and any fence while no Envoy of ours serves
    (a rollback would then leave the pod with none). A start holds the lock until its Envoy is LIVE or
    dead, so a begun record whose socket is gone is an attempt that ended without an Envoy (a crash, a
    retry to come): fencing it is what stops the retry.
    """
    if slot == own_slot:
        return f"slot {slot} is this agent's own slot"
    if state.active_slot == slot:
        return f"slot {slot} is the active slot: its take-over completed"
    record = state.slots[slot]
    if record.phase in TAKE_OVER_PHASES and record.epoch is not None:
        # A record left by an earlier take-over of that slot carries an epoch the active Envoy passed.
        newer = state.epoch is None or record.epoch > state.epoch
        if newer and socket_id(record.epoch) in bound_socket_ids:
            return f"slot {slot} began its take-over ({record.phase}, epoch {record.epoch}, its Envoy runs)"
    if state.active_slot != own_slot or not serving:
        return (
            f"no Envoy of slot {own_slot} serves (active slot {state.active_slot}): "
            "rolling back would leave the pod without one"
        )
    return None


def fenced_reason(fence: Fence | None, state: SharedState, slot: Slot) -> str | None:
    """Why `slot` must not start an Envoy: a fence covers it; None when none does (lock held).

    A fence never covers the active slot (a restarted agent of the serving slot is not a take-over).
    """
    if fence is None or fence.slot != slot or state.active_slot == slot:
        return None
    return (
        f"fenced: the controller rolled back this slot's take-over (attempt {fence.token}, while epoch "
        f"{fence.parent_epoch} served); no Envoy starts here until the controller sets it to an image again"
    )
