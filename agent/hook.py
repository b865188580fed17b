"""What `hotupgrade-agent wait`, the pair's postStart hook, answers the kubelet for one look at /status. Pure.

The hook's exit code decides what the kubelet does with the container (kubelet v1.34.4,
pkg/kubelet/kuberuntime/kuberuntime_container.go `startContainer`): a failing postStart hook makes it
kill the container (FailedPostStartHook) and return ErrPostStartHook, and the container's next start,
whichever image it then has, waits out the crash-loop back-off `doBackOff` (kuberuntime_manager.go)
computes from that exit. So a slot whose take-over failed while the other slot's Envoy serves on passes
its hook: the container stays up with its agent reporting `phase: failed` on /status, the pod stays Ready
(the old Envoy serves it), and the controller rolls the slot back to the empty image in one image change,
which the kubelet performs at once. Failing the hook instead left the pod NotReady until the back-off on
the rollback's start ended (15 s in e2e/test_xds.py). A slot that failed with no other Envoy serving (a
fresh pod) still fails its hook, so the kubelet restarts it and the pod never turns Ready without Envoy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

READY, FAILED = 0, 1


@dataclass(frozen=True)
class HookVerdict:
    """The hook's exit code (0 passes, 1 fails) and the line it prints."""

    code: int
    message: str


def wait_verdict(status: Mapping[str, Any]) -> HookVerdict | None:
    """The verdict for one /status document (docs/contract.md "Agent status"), or None: keep waiting.

    Only `slot`, `phase`, `last_error` and `state.active_slot` / `state.slots` are read."""
    slot, phase, error = status["slot"], status["phase"], status.get("last_error")
    if phase == "retired":
        return HookVerdict(READY, f"slot {slot} stands by: {error}")
    if phase != "failed":
        return None
    serving = serving_slot(status.get("state") or {})
    if serving is not None and serving != slot:
        return HookVerdict(
            READY,
            f"slot {slot} phase failed, last error: {error}; slot {serving} serves on, so this container "
            "stays up, failed, until the controller rolls it back (a failed hook would have the kubelet "
            "kill it and hold the rollback in its crash-loop back-off)",
        )
    return HookVerdict(FAILED, f"slot {slot} phase failed, last error: {error}")


def serving_slot(state: Mapping[str, Any]) -> str | None:
    """The slot the shared state records as active and serving, if any."""
    active = state.get("active_slot")
    slots = state.get("slots") or {}
    if active is None or (slots.get(active) or {}).get("phase") != "serving":
        return None
    return str(active)
