"""The shared state file's model: what both agents of a pod agree on, and pure edits of it.

No I/O and no clock here: callers pass `now`. agent/rundir.py reads and writes the file under the
run-dir lock; docs/contract.md ("Agent status", "Schema versions") names the fields the controller
relies on and the versioning rules: `schema` is the major version (the only thing schema 1.0 agents
check), `schemaVersion` is "MAJOR.MINOR"; a newer minor only adds optional fields, a newer major is
refused (`NewerSchemaError`) and never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypedDict

from agent import contract
from agent.contract import AgentPhase, AgentRole, Slot

# "MAJOR.MINOR" of the state file and /status. Minor 1 added `schemaVersion` and the slots'
# `replaced_by_epoch` and `released_at` (the hold). The major is also written as `schema`, the only
# field schema 1.0 agents check (with ==).
SCHEMA_VERSION = contract.SCHEMA_VERSION
SCHEMA, SCHEMA_MINOR = (int(part) for part in SCHEMA_VERSION.split("."))
HISTORY_LIMIT = 64


class SlotJSON(TypedDict):
    """One slot in the state file."""

    phase: AgentPhase | None
    since: float | None
    pid: int | None
    epoch: int | None
    error: str | None
    replaced_by_epoch: int | None
    released_at: float | None


class EventJSON(TypedDict):
    """One step in the state file's history."""

    at: float
    slot: Slot
    event: str
    epoch: int | None
    detail: str | None


class StateJSON(TypedDict):
    """The state file as JSON (docs/contract.md "Agent status", field `state`)."""

    schema: int
    schemaVersion: str
    active_slot: Slot | None
    epoch: int | None
    base_id: int
    hot_restart_version: str | None
    envoy_version: str | None
    updated: float
    slots: dict[Slot, SlotJSON]
    history: list[EventJSON]


class StateFormatError(ValueError):
    """The state file exists but is not a state this agent understands."""


class NewerSchemaError(StateFormatError):
    """The state file was written by an agent of a newer major schema: never act on it, never rewrite it."""


@dataclass(frozen=True)
class SlotRecord:
    """One slot's last known phase; `pid` is in that container's PID namespace (informative only).

    The hold: `replaced_by_epoch` is the epoch of the other slot's Envoy that replaced ours, kept until
    this slot serves again; `released_at` (Unix time) is when the kubelet stopped this slot's agent
    after that, i.e. the controller reset the container. Replaced and not released = held: a restart
    of this container stands by (docs/contract.md "The replaced slot").
    """

    phase: AgentPhase | None = None
    since: float | None = None
    pid: int | None = None
    epoch: int | None = None
    error: str | None = None
    replaced_by_epoch: int | None = None
    released_at: float | None = None


@dataclass(frozen=True)
class Event:
    """One step of an agent, as the history records it (`at`: Unix time)."""

    at: float
    slot: Slot
    event: str
    epoch: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class SharedState:
    """The whole state file: which slot owns the listeners and each slot's phase."""

    base_id: int
    active_slot: Slot | None = None
    epoch: int | None = None
    hot_restart_version: str | None = None
    envoy_version: str | None = None
    updated: float = 0.0
    slots: Mapping[Slot, SlotRecord] = field(default_factory=lambda: {"a": SlotRecord(), "b": SlotRecord()})
    history: tuple[Event, ...] = ()


def as_slot(value: str) -> Slot:
    """Validate a slot name coming from the outside."""
    if value not in contract.SLOTS:
        raise ValueError(f"slot must be one of {contract.SLOTS}, not {value!r}")
    return value


def other_slot(slot: Slot) -> Slot:
    """The twin of `slot`."""
    return "b" if slot == "a" else "a"


def initial_state(base_id: int) -> SharedState:
    """The state before any agent recorded anything."""
    return SharedState(base_id=base_id)


def with_slot(
    state: SharedState,
    slot: Slot,
    *,
    now: float,
    phase: AgentPhase,
    epoch: int | None = None,
    pid: int | None = None,
    error: str | None = None,
) -> SharedState:
    """Set one slot's phase; `since` moves only when the phase changes; the hold is kept."""
    old = state.slots[slot]
    since = old.since if old.phase == phase and old.since is not None else now
    record = replace(old, phase=phase, since=since, pid=pid, epoch=epoch, error=error)
    return replace(state, slots={**state.slots, slot: record}, updated=now)


def with_hold(
    state: SharedState, slot: Slot, *, replaced_by_epoch: int | None, released_at: float | None
) -> SharedState:
    """Set one slot's hold fields (SlotRecord), keep the rest."""
    record = replace(state.slots[slot], replaced_by_epoch=replaced_by_epoch, released_at=released_at)
    return replace(state, slots={**state.slots, slot: record})


def held_by(state: SharedState, slot: Slot) -> int | None:
    """The epoch that replaced `slot` while its container was not reset since, else None."""
    record = state.slots[slot]
    return record.replaced_by_epoch if record.released_at is None else None


def with_event(
    state: SharedState,
    *,
    now: float,
    slot: Slot,
    event: str,
    epoch: int | None = None,
    detail: str | None = None,
) -> SharedState:
    """Append one step to the bounded history."""
    history = (*state.history, Event(at=now, slot=slot, event=event, epoch=epoch, detail=detail))
    return replace(state, history=history[-HISTORY_LIMIT:], updated=now)


def with_active(
    state: SharedState,
    slot: Slot,
    *,
    now: float,
    epoch: int,
    pid: int | None,
    envoy_version: str,
    hot_restart_version: str,
) -> SharedState:
    """`slot`'s Envoy is LIVE and owns the listeners; a previous active slot is replaced (held) and
    starts draining; `slot` itself is no longer held."""
    previous = state.active_slot
    state = replace(
        state,
        active_slot=slot,
        epoch=epoch,
        envoy_version=envoy_version,
        hot_restart_version=hot_restart_version,
    )
    state = with_slot(state, slot, now=now, phase="serving", epoch=epoch, pid=pid)
    state = with_hold(state, slot, replaced_by_epoch=None, released_at=None)
    if previous is not None and previous != slot:
        state = with_hold(state, previous, replaced_by_epoch=epoch, released_at=None)
        old = state.slots[previous]
        if old.phase in ("serving", "draining"):
            state = with_slot(state, previous, now=now, phase="draining", epoch=old.epoch, pid=old.pid)
    return state


def with_stopped(
    state: SharedState, slot: Slot, *, epoch: int | None, now: float, error: str | None
) -> SharedState:
    """`slot`'s Envoy of `epoch` is gone for good: replaced (retired) or stopped at pod deletion.

    A record that already describes another epoch belongs to a newer agent of that slot: left alone.
    """
    old = state.slots[slot]
    if old.epoch is not None and epoch is not None and old.epoch != epoch:
        return state
    state = with_slot(state, slot, now=now, phase="retired", epoch=old.epoch, pid=old.pid, error=error)
    if state.active_slot == slot and state.epoch == old.epoch:
        state = replace(state, active_slot=None)
    return state


def role_of(state: SharedState, slot: Slot, *, envoy_running: bool) -> AgentRole:
    """The slot's role as /status reports it; a slot draining after being replaced is already retired."""
    phase = state.slots[slot].phase
    if phase == "retired" or (phase == "draining" and state.active_slot != slot):
        return "retired"
    if state.active_slot == slot and envoy_running:
        return "active"
    return "standby"


def is_ready(state: SharedState, slot: Slot, *, envoy_running: bool) -> bool:
    """Ready = this slot's Envoy is the recorded active one, serving, and its process is up."""
    return state.active_slot == slot and state.slots[slot].phase == "serving" and envoy_running


def slot_of_epoch(state: SharedState, epoch: int, *, besides: Slot) -> Slot | None:
    """The other slot if its recorded Envoy is `epoch` (the Envoy we are taking over from)."""
    other = other_slot(besides)
    return other if state.slots[other].epoch == epoch else None


def replaced_by_other(state: SharedState, slot: Slot, *, epoch: int) -> bool:
    """Another Envoy has taken over from ours (epoch `epoch` of `slot`)."""
    return state.active_slot != slot or (state.epoch is not None and state.epoch > epoch)


def to_json(state: SharedState) -> StateJSON:
    """The state as the file stores it (slots sorted)."""
    slots: dict[Slot, SlotJSON] = {
        name: SlotJSON(
            phase=record.phase,
            since=record.since,
            pid=record.pid,
            epoch=record.epoch,
            error=record.error,
            replaced_by_epoch=record.replaced_by_epoch,
            released_at=record.released_at,
        )
        for name, record in sorted(state.slots.items())
    }
    return StateJSON(
        schema=SCHEMA,
        schemaVersion=SCHEMA_VERSION,
        active_slot=state.active_slot,
        epoch=state.epoch,
        base_id=state.base_id,
        hot_restart_version=state.hot_restart_version,
        envoy_version=state.envoy_version,
        updated=state.updated,
        slots=slots,
        history=[
            EventJSON(at=e.at, slot=e.slot, event=e.event, epoch=e.epoch, detail=e.detail)
            for e in state.history
        ],
    )


def _opt_int(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateFormatError(f"{name} must be an integer or null, not {value!r}")
    return value


def _opt_str(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise StateFormatError(f"{name} must be a string or null, not {value!r}")


def _opt_float(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateFormatError(f"{name} must be a number or null, not {value!r}")
    return float(value)


def _opt_phase(value: object) -> AgentPhase | None:
    if value is None:
        return None
    if value not in contract.PHASES:
        raise StateFormatError(f"unknown phase {value!r}")
    return value


def _opt_slot(value: object) -> Slot | None:
    if value is None:
        return None
    if value not in contract.SLOTS:
        raise StateFormatError(f"unknown slot {value!r}")
    return value


def parse_schema_version(value: object) -> tuple[int, int]:
    """ "MAJOR.MINOR" -> (major, minor); StateFormatError for anything else."""
    if isinstance(value, str):
        major, dot, minor = value.partition(".")
        if dot and major.isdigit() and minor.isdigit():
            return int(major), int(minor)
    raise StateFormatError(f"schemaVersion must be a string MAJOR.MINOR, not {value!r}")


def schema_version_of(data: dict[str, object]) -> tuple[int, int]:
    """The (major, minor) a document declares: `schemaVersion`, else (`schema`, 0) for schema 1.0 writers.

    Raises NewerSchemaError for a major above ours, StateFormatError when the two fields disagree.
    """
    schema = data.get("schema")
    if "schemaVersion" in data:
        major, minor = parse_schema_version(data["schemaVersion"])
    elif isinstance(schema, int) and not isinstance(schema, bool):
        major, minor = schema, 0
    else:
        raise StateFormatError(f"unsupported state schema {schema!r}")
    if major > SCHEMA:
        raise NewerSchemaError(
            f"the state file has schema {major}.{minor}, newer than this agent's {SCHEMA_VERSION}: "
            "written by a newer agent; this one will not act on it or rewrite it"
        )
    if major != SCHEMA or schema != major:
        raise StateFormatError(f"unsupported state schema {schema!r} (schemaVersion {major}.{minor})")
    return major, minor


def _migrate_holds(state: SharedState, minor: int) -> SharedState:
    """Schema 1.0 had no hold fields: a slot draining while the other is active was replaced by it.

    A 1.0 `retired` slot may or may not have been reset since; it is left unheld, as 1.0 agents did.
    """
    if minor >= 1 or state.active_slot is None or state.epoch is None:
        return state
    other = other_slot(state.active_slot)
    if state.slots[other].phase != "draining":
        return state
    return with_hold(state, other, replaced_by_epoch=state.epoch, released_at=None)


def from_json(data: object) -> SharedState:
    """Parse and validate a decoded state file of schema 1.x (1.0 documents are migrated to ours)."""
    if not isinstance(data, dict):
        raise StateFormatError("the state file is not a JSON object")
    _major, minor = schema_version_of(data)
    base_id = _opt_int(data.get("base_id"), "base_id")
    if base_id is None:
        raise StateFormatError("base_id is missing")
    raw_slots = data.get("slots", {})
    if not isinstance(raw_slots, dict):
        raise StateFormatError("slots must be an object")
    slots: dict[Slot, SlotRecord] = {"a": SlotRecord(), "b": SlotRecord()}
    for name, raw in raw_slots.items():
        slot = _opt_slot(name)
        if slot is None or not isinstance(raw, dict):
            raise StateFormatError(f"bad slot record {name!r}")
        slots[slot] = SlotRecord(
            phase=_opt_phase(raw.get("phase")),
            since=_opt_float(raw.get("since"), "since"),
            pid=_opt_int(raw.get("pid"), "pid"),
            epoch=_opt_int(raw.get("epoch"), "epoch"),
            error=_opt_str(raw.get("error"), "error"),
            replaced_by_epoch=_opt_int(raw.get("replaced_by_epoch"), "replaced_by_epoch"),
            released_at=_opt_float(raw.get("released_at"), "released_at"),
        )
    history: list[Event] = []
    raw_history = data.get("history", [])
    if not isinstance(raw_history, list):
        raise StateFormatError("history must be a list")
    for raw in raw_history:
        if not isinstance(raw, dict):
            raise StateFormatError("history entries must be objects")
        slot = _opt_slot(raw.get("slot"))
        at = _opt_float(raw.get("at"), "at")
        event = _opt_str(raw.get("event"), "event")
        if slot is None or at is None or event is None:
            raise StateFormatError(f"incomplete history entry {raw!r}")
        history.append(
            Event(
                at=at,
                slot=slot,
                event=event,
                epoch=_opt_int(raw.get("epoch"), "epoch"),
                detail=_opt_str(raw.get("detail"), "detail"),
            )
        )
    state = SharedState(
        base_id=base_id,
        active_slot=_opt_slot(data.get("active_slot")),
        epoch=_opt_int(data.get("epoch"), "epoch"),
        hot_restart_version=_opt_str(data.get("hot_restart_version"), "hot_restart_version"),
        envoy_version=_opt_str(data.get("envoy_version"), "envoy_version"),
        updated=_opt_float(data.get("updated"), "updated") or 0.0,
        slots=slots,
        history=tuple(history),
    )
    return _migrate_holds(state, minor)
