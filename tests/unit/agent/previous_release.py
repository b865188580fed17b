"""The state-file reader of the previous release (schema 1, no `schemaVersion`), frozen on purpose.

A verbatim copy of the checks of agent/state.py `from_json` at commit be521ba, reduced to what it
returns: the tests feed it the documents this release writes to prove the previous agent still reads
them (docs/contract.md "Schema versions"). Never update it to follow agent/state.py.
"""

from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1
PHASES = ("starting", "serving", "taking-over", "draining", "retired", "failed")
SLOTS = ("a", "b")


class StateFormatError(ValueError):
    """The state file exists but is not a state the previous agent understands."""


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


def _opt_phase(value: object) -> str | None:
    if value is None:
        return None
    if value not in PHASES:
        raise StateFormatError(f"unknown phase {value!r}")
    return str(value)


def _opt_slot(value: object) -> str | None:
    if value is None:
        return None
    if value not in SLOTS:
        raise StateFormatError(f"unknown slot {value!r}")
    return str(value)


def from_json(data: object) -> dict[str, Any]:
    """Parse and validate a decoded state file as the previous release did; what it understood."""
    if not isinstance(data, dict):
        raise StateFormatError("the state file is not a JSON object")
    if data.get("schema") != SCHEMA_VERSION:
        raise StateFormatError(f"unsupported state schema {data.get('schema')!r}")
    base_id = _opt_int(data.get("base_id"), "base_id")
    if base_id is None:
        raise StateFormatError("base_id is missing")
    raw_slots = data.get("slots", {})
    if not isinstance(raw_slots, dict):
        raise StateFormatError("slots must be an object")
    slots: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    for name, raw in raw_slots.items():
        slot = _opt_slot(name)
        if slot is None or not isinstance(raw, dict):
            raise StateFormatError(f"bad slot record {name!r}")
        slots[slot] = {
            "phase": _opt_phase(raw.get("phase")),
            "since": _opt_float(raw.get("since"), "since"),
            "pid": _opt_int(raw.get("pid"), "pid"),
            "epoch": _opt_int(raw.get("epoch"), "epoch"),
            "error": _opt_str(raw.get("error"), "error"),
        }
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
        _opt_int(raw.get("epoch"), "epoch")
        _opt_str(raw.get("detail"), "detail")
    return {
        "base_id": base_id,
        "active_slot": _opt_slot(data.get("active_slot")),
        "epoch": _opt_int(data.get("epoch"), "epoch"),
        "hot_restart_version": _opt_str(data.get("hot_restart_version"), "hot_restart_version"),
        "envoy_version": _opt_str(data.get("envoy_version"), "envoy_version"),
        "slots": slots,
    }
