"""The take-over deadline (docs/contract.md "Take-over deadline"): when it fires, what shm flags decide."""

from __future__ import annotations

import pytest

from agent.decisions import INITIALIZING_FLAG, at_takeover_deadline, takeover_deadline_passed


def test_the_deadline_bounds_only_take_overs() -> None:
    assert takeover_deadline_passed(takeover=True, seconds_since_spawn=60.0, deadline_seconds=60.0)
    assert not takeover_deadline_passed(takeover=True, seconds_since_spawn=59.9, deadline_seconds=60.0)
    # A fresh start has no old Envoy to leave serving: LIVE_TIMEOUT and the retries bound it instead.
    assert not takeover_deadline_passed(takeover=False, seconds_since_spawn=600.0, deadline_seconds=60.0)


@pytest.mark.parametrize("flags", [INITIALIZING_FLAG, INITIALIZING_FLAG | 0x6, None])
def test_a_child_that_never_asked_its_parent_to_drain_is_abandoned(flags: int | None) -> None:
    assert at_takeover_deadline(flags) == "abandon"


@pytest.mark.parametrize("flags", [0, 0x6])
def test_a_child_that_cleared_the_flag_has_told_its_parent_to_drain_and_is_resumed(flags: int) -> None:
    # drainParentListeners() sends DrainListeners, then clears INITIALIZING: the parent drains already.
    assert at_takeover_deadline(flags) == "resume"
