"""Pure decisions of the stalled-child watchdog (docs/contract.md "A stalled child"): no I/O, no clock.

Envoy serves its admin API from its main thread, the thread that also runs the hot-restart protocol;
the workers serve traffic on their own. A child whose admin API answered for its epoch and then stays
silent has its main thread stuck. The known case (envoy#34069, envoy#34732; Envoy 1.40
source/server/hot_restarting_child.cc and hot_restarting_parent.cc): once the child asked its parent to
drain, the parent forwards the UDP/QUIC packets it cannot place to the child over the hot-restart domain
socket, from its main thread and with a blocking sendmsg, and the child reads them on its main thread.
At each stats flush the child sends its parent a Stats request and blocks its main thread until the
reply (HotRestartingChild::getParentStats). When forwarded packets fill the child's socket queue
meanwhile, the parent blocks in its send and never reads the request: both main threads wait on each
other for good, while both Envoys' workers keep serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

from agent.decisions import INITIALIZING_FLAG

# A main thread that does not answer its admin API for this long is stuck, not busy: Envoy's own work on
# it (a config update, a stats flush) takes milliseconds. Before LIVE a verdict may end the child and fail
# the upgrade, so the bound is generous; after LIVE it only sends a reply that a child not waiting for one
# reads as the reply to its next Stats request, so the bound is short: the wedge holds the new Envoy's
# xDS, admin and timers (its Terminate among them), and may come back at each stats flush (every 5 s)
# while the old Envoy works off the packets it queued to forward.
STALL_SECONDS = 10.0
LIVE_STALL_SECONDS = 3.0
# How often the shell asks the admin API while it watches (each ask times out after 1 s).
WATCH_INTERVAL_SECONDS = 0.5

StallAction = Literal["abandon", "unblock"]


@dataclass(frozen=True)
class ProgressMark:
    """When our Envoy's admin API last answered for its epoch (time.monotonic()), None: not yet."""

    epoch: int
    last_answer_at: float | None = None


def observe(mark: ProgressMark, *, answered_epoch: int | None, now: float) -> ProgressMark:
    """The mark after one look at the admin API: `answered_epoch` is the epoch that answered, or None."""
    if answered_epoch == mark.epoch:
        return ProgressMark(epoch=mark.epoch, last_answer_at=now)
    return mark


def silent_seconds(mark: ProgressMark, *, now: float) -> float | None:
    """Seconds since our Envoy last answered; None if it never did (the handshake bounds that case)."""
    return None if mark.last_answer_at is None else now - mark.last_answer_at


def stalled(mark: ProgressMark, *, now: float, stall_seconds: float = STALL_SECONDS) -> bool:
    """Our Envoy answered for its epoch once and has been silent for `stall_seconds` since."""
    silent = silent_seconds(mark, now=now)
    return silent is not None and silent >= stall_seconds


def at_stall(flags: int | None, *, live: bool) -> StallAction:
    """What to do with a stalled child, stopped (SIGSTOP) while the shm flags word was read.

    Before LIVE with INITIALIZING set (or no segment): the parent was never told to drain
    (drainParentListeners() clears the bit right after it sent DrainListeners), so ending the child
    leaves the parent serving: abandon, as at the take-over deadline. Otherwise the parent drains and
    only this child can take the traffic: unblock it with the Stats reply its main thread waits for in
    the wedge above. Once LIVE, always unblock: the flag may be another child's by then, and ours has
    told its parent to drain.
    """
    if live:
        return "unblock"
    if flags is not None and not flags & INITIALIZING_FLAG:
        return "unblock"
    return "abandon"


class StallJSON(TypedDict):
    """GET /status `stall` (docs/contract.md "Agent status")."""

    epoch: int
    silent_seconds: float
    initializing: bool | None
    action: StallAction
    at: float


@dataclass(frozen=True)
class Stall:
    """One stalled-child verdict, as /status `stall` shows it (docs/contract.md "Agent status")."""

    epoch: int
    silent_seconds: float
    initializing: bool | None  # the shm INITIALIZING bit when it was read; None: no segment or unread
    action: StallAction
    at: float  # time.time()

    def to_json(self) -> StallJSON:
        """The `stall` field of GET /status."""
        return StallJSON(
            epoch=self.epoch,
            silent_seconds=round(self.silent_seconds, 3),
            initializing=self.initializing,
            action=self.action,
            at=round(self.at, 3),
        )
