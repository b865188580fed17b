"""The /status document matches the contract; the run dir's state file and lock behave."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from unittest.mock import ANY

import pytest

from agent import contract
from agent.fence import parse_fence
from agent.fencing import FenceDesk
from agent.logs import EventLog
from agent.records import StateRecorder
from agent.rundir import LockTimeoutError, RunDir
from agent.state import SharedState, StateFormatError, initial_state, with_active, with_slot
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


def fence_desk(
    tmp_path: Path, state: SharedState = STATE, *, serving: bool = True
) -> tuple[FenceDesk, RunDir]:
    """a's fence desk over a run dir holding `state`."""
    rundir = RunDir(tmp_path)
    rundir.ensure()
    rundir.write_state(state)
    log = EventLog("a", io.StringIO())
    records = StateRecorder(rundir, slot="a", base_id=7, log=log)
    current = view("serving" if serving else "retired", running=serving)
    return FenceDesk(slot="a", rundir=rundir, records=records, view=lambda: current, log=log), rundir


def ask(desk: FenceDesk, token: str = "b:1@t") -> tuple[int, dict[str, object]]:
    code, body = desk.fence(json.dumps({"slot": "b", "token": token}).encode())
    return code, json.loads(body)


def test_the_fence_desk_records_a_fence_once_and_lifts_it(tmp_path: Path) -> None:
    desk, rundir = fence_desk(tmp_path)
    code, body = ask(desk)
    assert code == 200 and body["fence"] == {
        "slot": "b",
        "token": "b:1@t",
        "parent_epoch": 0,
        "fenced_at": ANY,
    }
    assert rundir.read_fence() is not None and rundir.read_fence() == parse_fence(body["fence"])
    assert ask(desk) == (200, body), "asked again (a timeout, a restarted controller): the same fence"
    events = [e.event for e in rundir.read_or_initial(7).history]
    assert events.count("fenced") == 1
    assert ask(desk, "b:2@t")[0] == 200 and rundir.read_fence().token == "b:2@t"  # type: ignore[union-attr]
    assert desk.lift("b") == (200, b'{"lifted": true}') and rundir.read_fence() is None
    assert desk.lift("b") == (200, b'{"lifted": false}')
    assert "fence-lifted" in [e.event for e in rundir.read_or_initial(7).history]


def test_the_fence_desk_refuses_while_nothing_of_ours_serves_and_records_nothing(tmp_path: Path) -> None:
    desk, rundir = fence_desk(tmp_path, serving=False)
    code, body = ask(desk)
    assert code == 409 and "rolling back would leave the pod without one" in str(body["refused"])
    assert rundir.read_fence() is None


def test_the_fence_desk_fences_a_begun_take_over_whose_envoy_is_gone(tmp_path: Path) -> None:
    # No Envoy of epoch 1 holds its hot-restart socket in this network namespace: the attempt ended.
    began = with_slot(STATE, "b", now=2.0, phase="taking-over", epoch=1)
    desk, rundir = fence_desk(tmp_path, began)
    assert ask(desk)[0] == 200 and rundir.read_fence() is not None


def test_the_fence_desk_answers_503_while_a_start_holds_the_lock(tmp_path: Path) -> None:
    desk, rundir = fence_desk(tmp_path)
    with rundir.locked():
        started = time.monotonic()
        code, body = ask(desk)
        assert code == 503 and "lock" in str(body["error"])
        assert time.monotonic() - started < 5
        assert desk.lift("b")[0] == 503
    assert rundir.read_fence() is None


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"slot": "c", "token": "t"}', b'{"slot": "b"}'])
def test_the_fence_desk_refuses_malformed_requests(tmp_path: Path, body: bytes) -> None:
    desk, rundir = fence_desk(tmp_path)
    assert desk.fence(body)[0] == 400 and rundir.read_fence() is None
    assert desk.lift("c")[0] == 400
