"""The postStart hook's verdict (agent/hook.py): a failed take-over passes while the other Envoy serves."""

from __future__ import annotations

from typing import Any

import pytest

from agent.hook import FAILED, READY, serving_slot, wait_verdict


def status(
    phase: str, *, slot: str = "b", active: str | None = "a", active_phase: str | None = "serving"
) -> dict[str, Any]:
    """A /status document of `slot` with the shared state's active slot in `active_phase`."""
    slots: dict[str, dict[str, Any]] = {"a": {"phase": None}, "b": {"phase": None}}
    slots[slot] = {"phase": phase}
    if active is not None:
        slots[active] = {"phase": active_phase}
    return {
        "slot": slot,
        "phase": phase,
        "last_error": "Envoy epoch 3 was not LIVE 10.0s after its spawn (take-over deadline 10s)",
        "state": {"active_slot": active, "slots": slots},
    }


def test_a_failed_takeover_passes_while_the_other_slot_serves_and_names_the_error() -> None:
    verdict = wait_verdict(status("failed"))
    assert verdict is not None and verdict.code == READY
    assert "slot b phase failed" in verdict.message
    assert "take-over deadline" in verdict.message
    assert "slot a serves on" in verdict.message


@pytest.mark.parametrize(
    ("active", "active_phase"),
    [
        (None, None),  # a fresh pod: no Envoy serves, the kubelet must restart the slot
        ("a", "draining"),  # the recorded active Envoy is on its way out
        ("a", "failed"),
        ("a", "taking-over"),
    ],
)
def test_a_failed_slot_with_no_other_envoy_serving_fails_its_hook(
    active: str | None, active_phase: str | None
) -> None:
    verdict = wait_verdict(status("failed", active=active, active_phase=active_phase))
    assert verdict is not None and verdict.code == FAILED
    assert verdict.message.startswith("slot b phase failed, last error: Envoy epoch 3")


def test_a_slot_recorded_active_itself_fails_its_hook_when_failed() -> None:
    # Its own Envoy was the serving one (a crash-restart that gave up): nobody else serves the pod.
    verdict = wait_verdict(status("failed", slot="a", active="a", active_phase="serving"))
    assert verdict is not None and verdict.code == FAILED


def test_a_retired_slot_stands_by_and_passes() -> None:
    verdict = wait_verdict(status("retired"))
    assert verdict is not None and verdict.code == READY and verdict.message.startswith("slot b stands by")


@pytest.mark.parametrize("phase", ["starting", "taking-over", "serving", "draining"])
def test_any_other_phase_keeps_waiting(phase: str) -> None:
    assert wait_verdict(status(phase)) is None


def test_serving_slot_reads_the_active_slot_only_when_it_serves() -> None:
    assert serving_slot({"active_slot": "a", "slots": {"a": {"phase": "serving"}}}) == "a"
    assert serving_slot({"active_slot": "a", "slots": {"a": {"phase": "draining"}}}) is None
    assert serving_slot({"active_slot": None, "slots": {}}) is None
    assert serving_slot({}) is None
