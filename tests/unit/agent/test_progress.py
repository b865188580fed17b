"""The stalled-child watchdog's decisions (agent/progress.py, docs/contract.md "A stalled child")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.decisions import INITIALIZING_FLAG
from agent.progress import (
    LIVE_STALL_SECONDS,
    STALL_SECONDS,
    ProgressMark,
    Stall,
    at_stall,
    observe,
    silent_seconds,
    stalled,
)
from agent.state import initial_state
from agent.status import AgentView, status_document


def test_only_an_answer_for_our_epoch_is_progress() -> None:
    mark = ProgressMark(epoch=1)
    # The parent answers on the shared admin port until our ShutdownAdmin: not ours.
    assert observe(mark, answered_epoch=0, now=5.0) == mark
    assert observe(mark, answered_epoch=None, now=5.0) == mark
    assert observe(mark, answered_epoch=1, now=5.0) == ProgressMark(epoch=1, last_answer_at=5.0)


def test_a_child_that_never_answered_is_not_stalled_the_handshake_bound_covers_it() -> None:
    mark = ProgressMark(epoch=1)
    assert silent_seconds(mark, now=1000.0) is None
    assert not stalled(mark, now=1000.0)


def test_silence_after_an_answer_is_a_stall_once_it_lasts_stall_seconds() -> None:
    mark = observe(ProgressMark(epoch=1), answered_epoch=1, now=100.0)
    assert not stalled(mark, now=100.0 + STALL_SECONDS - 0.1)
    assert stalled(mark, now=100.0 + STALL_SECONDS)
    assert silent_seconds(mark, now=103.5) == 3.5
    # Each answer starts the count again.
    later = observe(mark, answered_epoch=1, now=109.0)
    assert not stalled(later, now=100.0 + STALL_SECONDS + 1)
    assert stalled(mark, now=104.0, stall_seconds=4.0)


@pytest.mark.parametrize("flags", [INITIALIZING_FLAG, INITIALIZING_FLAG | 0x6, None])
def test_before_live_a_child_that_never_told_its_parent_to_drain_is_abandoned(flags: int | None) -> None:
    assert at_stall(flags, live=False) == "abandon"


@pytest.mark.parametrize("flags", [0, 0x6])
def test_before_live_a_child_whose_parent_drains_is_unblocked_not_ended(flags: int) -> None:
    # The parent stopped accepting when it got DrainListeners: ending the child would leave no Envoy.
    assert at_stall(flags, live=False) == "unblock"


@pytest.mark.parametrize("flags", [INITIALIZING_FLAG, 0, None])
def test_after_live_a_stalled_child_is_always_unblocked(flags: int | None) -> None:
    # A set flag after our LIVE is another child's, never a reason to end the Envoy that serves.
    assert at_stall(flags, live=True) == "unblock"


def test_the_stall_is_shown_in_status() -> None:
    stall = Stall(epoch=3, silent_seconds=10.1234, initializing=False, action="unblock", at=1700000000.12345)
    shown = stall.to_json()
    assert shown == {
        "epoch": 3,
        "silent_seconds": 10.123,
        "initializing": False,
        "action": "unblock",
        "at": 1700000000.123,
    }
    view = AgentView("b", "serving", 3, True, "v", "11.104", None, stall=stall)
    assert status_document(view, initial_state(7))["stall"] == shown
    assert status_document(replace(view, stall=None), initial_state(7))["stall"] is None


def test_after_live_the_bound_is_shorter_because_a_surplus_reply_is_harmless() -> None:
    # Before LIVE a verdict can end the child and fail the upgrade; after LIVE it only sends a reply.
    assert LIVE_STALL_SECONDS < STALL_SECONDS
    mark = observe(ProgressMark(epoch=2), answered_epoch=2, now=0.0)
    assert stalled(mark, now=LIVE_STALL_SECONDS, stall_seconds=LIVE_STALL_SECONDS)
    assert not stalled(mark, now=LIVE_STALL_SECONDS, stall_seconds=STALL_SECONDS)
