"""Listener parity: Envoy's /listeners JSON as (name, address), compared before and after a take-over."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent import contract
from agent.listeners import (
    Listener,
    ListenerParity,
    ListenersFormatError,
    parse_listeners,
    parse_record,
    record_json,
)
from agent.rundir import RunDir
from agent.state import initial_state
from agent.status import AgentView, status_document

# The shape of GET /listeners?format=json on Envoy 1.40 (envoy.admin.v3.Listeners).
BODY = {
    "listener_statuses": [
        {"name": "http", "local_address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}}},
        {"name": "tcp", "local_address": {"socket_address": {"address": "::", "port_value": 15002}}},
        {"name": "uds", "local_address": {"pipe": {"path": "/var/run/app.sock"}}},
    ]
}


def test_parse_names_and_addresses() -> None:
    assert parse_listeners(json.dumps(BODY).encode()) == {
        Listener("http", "0.0.0.0:15001"),
        Listener("tcp", "[::]:15002"),
        Listener("uds", "unix:/var/run/app.sock"),
    }
    assert parse_listeners(b"{}") == frozenset()


@pytest.mark.parametrize("body", [b"not json", b'{"listener_statuses": [{"name": "x"}]}', b"[]"])
def test_anything_else_is_a_format_error(body: bytes) -> None:
    with pytest.raises(ListenersFormatError):
        parse_listeners(body)


def test_the_same_set_is_parity() -> None:
    listeners = parse_listeners(json.dumps(BODY).encode())
    parity = ListenerParity(parent_epoch=3, epoch=4, before=listeners, after=listeners)
    assert parity.same and parity.missing == [] and parity.added == []
    assert parity.describe() == "3 listeners, the same as epoch 3"


def test_a_moved_or_missing_listener_is_reported_both_ways() -> None:
    before = frozenset({Listener("http", "0.0.0.0:15001"), Listener("tcp", "0.0.0.0:15002")})
    after = frozenset({Listener("http", "0.0.0.0:15011")})
    parity = ListenerParity(parent_epoch=0, epoch=1, before=before, after=after)
    assert not parity.same
    assert parity.missing == [Listener("http", "0.0.0.0:15001"), Listener("tcp", "0.0.0.0:15002")]
    assert parity.added == [Listener("http", "0.0.0.0:15011")]
    assert parity.describe() == (
        "listeners differ from epoch 0: missing http@0.0.0.0:15001, tcp@0.0.0.0:15002; "
        "added http@0.0.0.0:15011"
    )


def test_status_shows_the_parity_or_null() -> None:
    view = AgentView(
        slot="b",
        phase="serving",
        epoch=1,
        envoy_running=True,
        envoy_version="1.40.0",
        hot_restart_version="11.104",
        last_error=None,
    )
    document = status_document(view, initial_state(contract.BASE_ID))
    assert tuple(document) == contract.STATUS_FIELDS
    assert document["listeners"] is None
    before = frozenset({Listener("http", "0.0.0.0:15001")})
    parity = ListenerParity(parent_epoch=0, epoch=1, before=before, after=frozenset())
    document = json.loads(json.dumps(status_document(_with(view, parity), initial_state(contract.BASE_ID))))
    assert document["listeners"] == {
        "parent_epoch": 0,
        "epoch": 1,
        "before": [{"name": "http", "address": "0.0.0.0:15001"}],
        "after": [],
        "missing": [{"name": "http", "address": "0.0.0.0:15001"}],
        "added": [],
        "same": False,
    }


def _with(view: AgentView, parity: ListenerParity) -> AgentView:
    return replace(view, listeners=parity)


def test_the_record_round_trips_through_the_run_dir(tmp_path: Path) -> None:
    listeners = parse_listeners(json.dumps(BODY).encode())
    rundir = RunDir(tmp_path)
    assert rundir.read_listeners() is None
    rundir.write_listeners(4, listeners)
    assert (tmp_path / contract.LISTENERS_FILE).exists()
    assert rundir.read_listeners() == (4, listeners)
    assert parse_record(record_json(4, listeners)) == (4, listeners)


@pytest.mark.parametrize("text", ["{", '{"epoch": "4", "listeners": []}', '{"epoch": 4}', "[]"])
def test_an_unreadable_record_is_none(tmp_path: Path, text: str) -> None:
    (tmp_path / contract.LISTENERS_FILE).write_text(text)
    assert RunDir(tmp_path).read_listeners() is None
