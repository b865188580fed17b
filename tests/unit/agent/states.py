"""Builders shared by the agent's pure tests: a recorded active Envoy and what the supervisor observed."""

from __future__ import annotations

from agent.decisions import LiveEnvoy, Observation
from agent.state import SharedState, initial_state, with_active

OURS = "11.104"


def active(
    slot: str = "a", epoch: int = 0, version: str = OURS, *, state: SharedState | None = None
) -> SharedState:
    """The state file once `slot`'s Envoy of `epoch` went LIVE in a fresh pod (base id 7) or after `state`."""
    assert slot in ("a", "b")
    return with_active(
        state or initial_state(7),
        "a" if slot == "a" else "b",
        now=1.0,
        epoch=epoch,
        pid=10,
        envoy_version="1.40.0",
        hot_restart_version=version,
    )


def observe(
    state: SharedState,
    *,
    admin: LiveEnvoy | None = None,
    bound: frozenset[int] = frozenset(),
    own: str = OURS,
) -> Observation:
    """What the supervisor saw under the lock: the state, the admin's answer, bound socket ids."""
    return Observation(state=state, admin=admin, bound_socket_ids=bound, own_hot_restart_version=own)
