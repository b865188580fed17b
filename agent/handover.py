"""The hand-over after a takeover: follow the replaced Envoy until it exits, stand in for it if it died.

Envoy's own protocol does the hand-over (our child sends DrainListeners, the parent drains, and after
`--parent-shutdown-time-s` our Envoy sends Terminate); this module only watches it. The parent is gone
when its hot-restart parent socket is no longer bound: we record that (the controller reads it as
"drained"). When it happened before our Terminate was due the parent died mid-drain, and when our Envoy's
admin API no longer answers, our Envoy's main thread still waits for a reply from it (a parent that
hung and was killed): in both cases we bind its socket, send one Stats reply, and answer for it until
our Envoy's Terminate (agent/hotrestart.py, envoy#7468); without that our Envoy aborts about ten seconds
later, or waits forever. It must not signal or stop any Envoy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent import hotrestart
from agent.admin import EnvoyAdmin
from agent.config import AgentConfig
from agent.contract import Slot
from agent.decisions import parent_vanished_early, socket_id, stand_in_needed
from agent.envoy import RunningEnvoy
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.records import StateRecorder
from agent.state import SharedState, with_stopped

# How long past the parent's shutdown time a stand-in waits for our Envoy's Terminate.
STAND_IN_GRACE = 30.0


@dataclass(frozen=True)
class Following:
    """The Envoy we hot-restarted from, until it exits; `live_at` is time.monotonic() when ours went LIVE."""

    parent_epoch: int
    parent_slot: Slot | None
    live_at: float


class HandOver:
    """Follows the replaced Envoy of our last takeover and owns the stand-in for it, if one is bound."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        admin: EnvoyAdmin,
        records: StateRecorder,
        metrics: AgentMetrics,
        log: EventLog,
    ) -> None:
        self.config = config
        self.admin = admin
        self.records = records
        self.metrics = metrics
        self.log = log
        self.following: Following | None = None
        self.stand_in: hotrestart.ParentStandIn | None = None
        self.stand_in_deadline = 0.0

    def follow(self, following: Following) -> None:
        """Start following the Envoy we just took over from."""
        self.following = following

    def check_parent(self, envoy: RunningEnvoy | None) -> None:
        """Is the replaced Envoy's socket gone? Then record it, standing in if it died early."""
        following = self.following
        if following is None:
            return
        if envoy is None:
            self.following = None
            return
        bound = hotrestart.read_bound_parent_ids(self.config.base_id)
        if socket_id(following.parent_epoch) in bound:
            return
        self.following = None
        elapsed = time.monotonic() - following.live_at
        early = parent_vanished_early(
            seconds_since_live=elapsed, parent_shutdown_seconds=self.config.parent_shutdown_seconds
        )
        self.metrics.drain_seconds.set(elapsed)
        detail = f"epoch {following.parent_epoch} exited {elapsed:.1f}s after our Envoy went LIVE"
        info = None if early else self.admin.server_info()
        answers = info is not None and info.epoch == envoy.epoch
        if stand_in_needed(early=early, own_admin_answers=answers):
            detail += "; standing in for it until our Envoy's Terminate"
            self._start_stand_in(following.parent_epoch)
        self.log.event(
            "old-envoy-exited",
            parent_epoch=following.parent_epoch,
            seconds=round(elapsed, 3),
            early=early,
            own_admin_answers=answers,
        )
        parent = following.parent_slot
        vanished = f"Envoy epoch {following.parent_epoch} vanished during its drain" if early else None

        def retire_parent(state: SharedState) -> SharedState:
            if parent is None or state.slots[parent].phase == "retired":
                return state
            return with_stopped(state, parent, epoch=following.parent_epoch, now=time.time(), error=vanished)

        self.records.update(retire_parent, event="old-envoy-exited", epoch=envoy.epoch, detail=detail)

    def check_stand_in(self) -> None:
        """Let go of the parent's socket once our Envoy sent Terminate, or past the deadline."""
        stand_in = self.stand_in
        if stand_in is not None and (
            stand_in.terminated.is_set() or time.monotonic() > self.stand_in_deadline
        ):
            self.release_stand_in("terminate received" if stand_in.terminated.is_set() else "deadline")

    def end(self, why: str) -> None:
        """Our Envoy exited: nothing left to follow or stand in for."""
        self.following = None
        self.release_stand_in(why)

    def release_stand_in(self, why: str) -> None:
        """Close the stand-in, if one is bound."""
        stand_in, self.stand_in = self.stand_in, None
        if stand_in is not None:
            stand_in.close()
            self.log.event("stand-in-released", why=why)

    def _start_stand_in(self, parent_epoch: int) -> None:
        try:
            self.stand_in = hotrestart.ParentStandIn(
                base_id=self.config.base_id,
                parent_epoch=parent_epoch,
                on_message=lambda what: self.log.event("stand-in-message", message=what),
                unblock=True,
            )
        except OSError as error:
            self.log.error("stand-in-failed", error=str(error))
            return
        self.stand_in_deadline = time.monotonic() + self.config.parent_shutdown_seconds + STAND_IN_GRACE
        self.log.warning("stand-in-bound", parent_epoch=parent_epoch)
