"""The /status document matches the contract; the run dir's state file and lock behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import contract
from agent.rundir import LockTimeoutError, RunDir
from agent.state import StateFormatError, initial_state, with_active
from agent.status import AgentView, status_document, view_is_ready


def view(phase: str = "serving", running: bool = True) -> AgentView:
    assert phase in contract.PHASES
    return AgentView(
        slot="a",
        phase=phase,
        epoch=0,
        envoy_running=running,
        envoy_version="v",
        hot_restart_version="11.104",
        last_error=None,
    )


STATE = with_active(
    initial_state(7), "a", now=1.0, epoch=0, pid=1, envoy_version="v", hot_restart_version="11.104"
)


def test_status_document_has_exactly_the_contract_fields() -> None:
    document = status_document(view(), STATE)
    assert tuple(document) == contract.STATUS_FIELDS
    assert document["role"] == "active"
    assert document["state"]["active_slot"] == "a"


def test_ready_only_when_serving_and_running() -> None:
    assert view_is_ready(view(), STATE)
    assert not view_is_ready(view(running=False), STATE)
    assert not view_is_ready(view(phase="draining"), STATE)
    assert not view_is_ready(view(), initial_state(7))


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    rundir = RunDir(tmp_path)
    assert rundir.read_state() is None
    assert rundir.read_or_initial(7) == initial_state(7)
    rundir.write_state(STATE)
    assert rundir.read_state() == STATE
    assert sorted(p.name for p in tmp_path.iterdir()) == [contract.STATE_FILE]


def test_a_corrupt_state_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / contract.STATE_FILE).write_text("{not json")
    with pytest.raises(StateFormatError):
        RunDir(tmp_path).read_state()


def test_the_lock_is_exclusive(tmp_path: Path) -> None:
    first, second = RunDir(tmp_path), RunDir(tmp_path)
    with first.locked(), pytest.raises(LockTimeoutError), second.locked(timeout=0.2):
        pass
    with second.locked(timeout=0.2):
        pass
