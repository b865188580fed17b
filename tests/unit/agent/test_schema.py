"""Schema versions of the state file and /status (docs/contract.md "Schema versions"): an older and a
newer agent accept or refuse each other's documents cleanly, and nobody rewrites a newer major.

The fixtures under fixtures/ are frozen documents of the previous release (schema 1.0, written by the
code at commit be521ba); previous_release.py is that release's reader, frozen likewise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent import contract
from agent.logs import EventLog
from agent.records import StateRecorder
from agent.rundir import RunDir
from agent.state import (
    SCHEMA_VERSION,
    NewerSchemaError,
    StateFormatError,
    from_json,
    held_by,
    to_json,
    with_stopped,
)
from agent.status import AgentView, status_document
from tests.unit.agent import previous_release
from tests.unit.agent.states import active

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def newer_major() -> dict[str, Any]:
    data = to_json(active("b", 1, state=active("a", 0)))
    return {**data, "schema": 2, "schemaVersion": "2.0", "owner": {"slot": "b"}}


def test_the_contract_names_the_version_both_documents_carry() -> None:
    assert SCHEMA_VERSION == contract.SCHEMA_VERSION == "1.4"
    data = to_json(active())
    assert (data["schema"], data["schemaVersion"]) == (1, "1.4")


def test_a_previous_release_state_file_is_read_as_1_0() -> None:
    data = fixture("state-1.0.json")
    assert "schemaVersion" not in data
    state = from_json(data)
    assert (state.active_slot, state.epoch, state.base_id) == ("b", 1, 7)
    assert (state.slots["a"].phase, state.slots["b"].phase) == ("retired", "serving")
    assert [e.event for e in state.history] == ["envoy-live", "envoy-live", "old-envoy-exited"]
    # 1.0 cannot tell whether a retired slot was reset since: it stays unheld, as 1.0 agents had it.
    assert held_by(state, "a") is None and held_by(state, "b") is None


def test_a_previous_release_state_file_with_a_draining_slot_gets_the_hold() -> None:
    data = fixture("state-when-old-slot-restarts.json")
    assert (data["schema"], "schemaVersion" in data) == (1, False)
    assert held_by(from_json(data), "a") == 1


def test_what_we_write_the_previous_release_reads_with_the_same_meaning() -> None:
    ours = with_stopped(active("b", 1, state=active("a", 0)), "a", epoch=0, now=9.0, error=None)
    seen = previous_release.from_json(json.loads(json.dumps(to_json(ours))))
    assert (seen["active_slot"], seen["epoch"], seen["base_id"]) == ("b", 1, 7)
    assert {slot: seen["slots"][slot]["phase"] for slot in ("a", "b")} == {"a": "retired", "b": "serving"}


def test_the_previous_release_refuses_a_newer_major() -> None:
    with pytest.raises(previous_release.StateFormatError, match="unsupported state schema 2"):
        previous_release.from_json(newer_major())


def test_a_newer_minor_is_read_and_its_unknown_fields_ignored() -> None:
    data = to_json(active("b", 1, state=active("a", 0)))
    newer: dict[str, Any] = {**data, "schemaVersion": "1.7", "owner": {"slot": "b"}}
    newer["slots"] = {slot: {**record, "restarts": 3} for slot, record in data["slots"].items()}
    state = from_json(newer)
    assert state == from_json(data)
    assert to_json(state)["schemaVersion"] == "1.4", "rewritten in our version, unknown fields dropped"


def test_a_newer_major_is_refused() -> None:
    with pytest.raises(NewerSchemaError, match=r"schema 2\.0, newer than this agent's 1\.4"):
        from_json(newer_major())
    # A newer schemaVersion wins over a `schema` left at 1: refusing is the side that corrupts nothing.
    with pytest.raises(NewerSchemaError):
        from_json({**newer_major(), "schema": 1})


@pytest.mark.parametrize(
    "bad",
    [
        {"schema": 1, "schemaVersion": "1", "base_id": 7},
        {"schema": 1, "schemaVersion": 1.1, "base_id": 7},
        {"schema": 0, "base_id": 7},
        {"schema": "1", "base_id": 7},
        {"schemaVersion": "1.1", "base_id": 7},
    ],
)
def test_inconsistent_versions_are_malformed_not_newer(bad: dict[str, Any]) -> None:
    with pytest.raises(StateFormatError) as raised:
        from_json(bad)
    assert not isinstance(raised.value, NewerSchemaError)


def test_a_newer_major_state_file_is_never_rewritten(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path)
    path = tmp_path / contract.STATE_FILE
    text = json.dumps(newer_major())
    path.write_text(text)
    records = StateRecorder(rundir, slot="a", base_id=7, log=EventLog("a"))
    with pytest.raises(NewerSchemaError):
        records.read()
    assert records.update(lambda state: state, event="x", epoch=None) is False
    assert path.read_text() == text


def test_a_garbled_state_file_is_still_replaced_by_a_fresh_one(tmp_path: Path) -> None:
    (tmp_path / contract.STATE_FILE).write_text('{"schema": 1}')
    records = StateRecorder(RunDir(tmp_path), slot="a", base_id=7, log=EventLog("a"))
    assert records.read().active_slot is None


def test_status_carries_the_version_and_everything_a_1_0_consumer_read() -> None:
    previous = fixture("status-1.0.json")
    assert "schemaVersion" not in previous
    view = AgentView(
        slot="b",
        phase="serving",
        epoch=1,
        envoy_running=True,
        envoy_version=previous["envoy_version"],
        hot_restart_version="11.104",
        last_error=None,
    )
    ours = json.loads(json.dumps(status_document(view, from_json(previous["state"]))))
    assert ours["schemaVersion"] == "1.4"
    assert set(previous) < set(ours)
    assert {k: ours[k] for k in previous if k != "state"} == {
        k: v for k, v in previous.items() if k != "state"
    }
    assert set(previous["state"]) < set(ours["state"])
    for slot in ("a", "b"):
        assert set(previous["state"]["slots"][slot]) < set(ours["state"]["slots"][slot])
