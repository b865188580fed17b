"""The stalled-child watchdog's shell (docs/contract.md "A stalled child"; decisions in agent/progress.py).

While our Envoy takes over, and after it is LIVE until the Envoy it replaced exits, the shell notes
every admin answer for our epoch. When our Envoy stays silent for STALL_SECONDS (before LIVE) or
LIVE_STALL_SECONDS (after), it reads Envoy's shm
flags (with the child stopped, before LIVE) and either ends the child (`abandon`: the parent was never
told to drain, it serves on) or sends it the Stats reply the hot-restart wedge holds it on (`unblock`).
Each verdict goes to the log, a metric and /status `stall`. agent/launch.py calls it before LIVE (with
the run-dir lock held), agent/supervisor.py after.
"""

from __future__ import annotations

import time

from agent import hotrestart
from agent.admin import EnvoyAdmin
from agent.config import AgentConfig
from agent.decisions import INITIALIZING_FLAG
from agent.envoy import RunningEnvoy
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.progress import (
    LIVE_STALL_SECONDS,
    STALL_SECONDS,
    WATCH_INTERVAL_SECONDS,
    ProgressMark,
    Stall,
    StallAction,
    at_stall,
    observe,
    silent_seconds,
    stalled,
)
from agent.view import ViewKeeper


class ChildWatchdog:
    """Watches one Envoy of ours at a time for a stuck main thread; used from the supervisor's thread."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        admin: EnvoyAdmin,
        hot_restart_version: str,
        view: ViewKeeper,
        metrics: AgentMetrics,
        log: EventLog,
    ) -> None:
        self.config = config
        self.admin = admin
        self.hot_restart_version = hot_restart_version
        self.view = view
        self.metrics = metrics
        self.log = log
        self._mark: ProgressMark | None = None
        self._next_look = 0.0

    def watch(self, epoch: int) -> None:
        """Start watching our Envoy of `epoch` (just spawned as a hot-restart child)."""
        self._mark = ProgressMark(epoch=epoch)

    def stop(self) -> None:
        """Nothing to watch: the Envoy it replaced exited, or ours did."""
        self._mark = None

    @property
    def watching(self) -> bool:
        """Whether an Envoy is being watched."""
        return self._mark is not None

    def saw(self, answered_epoch: int | None) -> None:
        """One admin answer (or None) the caller already read."""
        if self._mark is not None:
            self._mark = observe(self._mark, answered_epoch=answered_epoch, now=time.monotonic())

    def check(self, envoy: RunningEnvoy, *, live: bool) -> StallAction | None:
        """Act if our Envoy is stalled; the action taken, or None. `live`: it was LIVE already."""
        mark = self._mark
        now = time.monotonic()
        bound = LIVE_STALL_SECONDS if live else STALL_SECONDS
        if mark is None or not stalled(mark, now=now, stall_seconds=bound):
            return None
        silent = silent_seconds(mark, now=now) or 0.0
        # Stopped, so it cannot clear the flag between our read and our kill (as at the take-over deadline).
        paused = False if live else envoy.pause()
        flags = None if live else self._read_flags()
        action = at_stall(flags, live=live)
        self.log.warning(
            "child-stalled",
            pid=envoy.pid,
            silent_seconds=round(silent, 3),
            live=live,
            paused=paused,
            flags=flags,
            action=action,
            why="its admin API (main thread) stopped answering for its epoch",
        )
        if action == "abandon":
            envoy.kill()
            self._clear_flag()
            self._mark = None
        else:
            self._unblock(envoy)
            if paused:
                envoy.resume()
            # A fresh period: the reply may take a moment to get its main thread going again.
            self._mark = ProgressMark(epoch=mark.epoch, last_answer_at=time.monotonic())
        initializing = None if flags is None else bool(flags & INITIALIZING_FLAG)
        stall = Stall(
            epoch=mark.epoch, silent_seconds=silent, initializing=initializing, action=action, at=time.time()
        )
        self.view.set_stall(stall)
        self.metrics.child_stalls.labels(action=action).inc()
        return action

    def poll_live(self, envoy: RunningEnvoy) -> StallAction | None:
        """After LIVE: look at the admin API every WATCH_INTERVAL_SECONDS and act on a stall."""
        if self._mark is None or time.monotonic() < self._next_look:
            return None
        self._next_look = time.monotonic() + WATCH_INTERVAL_SECONDS
        info = self.admin.server_info()
        self.saw(None if info is None else info.epoch)
        return self.check(envoy, live=True)

    def _unblock(self, envoy: RunningEnvoy) -> None:
        try:
            hotrestart.send_stats_reply(self.config.base_id, envoy.epoch)
        except OSError as error:
            self.log.error("child-unblock-failed", error=str(error))
            return
        self.log.warning("child-unblocked", sent="an empty Stats reply to its hot-restart socket")

    def _read_flags(self) -> int | None:
        layout = hotrestart.layout_from_hot_restart_version(self.hot_restart_version)
        path = hotrestart.shm_path(self.config.shm_dir, self.config.base_id)
        try:
            return hotrestart.read_flags(path, layout)
        except (OSError, hotrestart.SharedMemoryMismatchError) as error:
            self.log.warning("shm-check-failed", path=str(path), error=str(error))
            return None

    def _clear_flag(self) -> None:
        layout = hotrestart.layout_from_hot_restart_version(self.hot_restart_version)
        path = hotrestart.shm_path(self.config.shm_dir, self.config.base_id)
        try:
            cleared = hotrestart.clear_initializing(path, layout, INITIALIZING_FLAG)
            self.log.warning("cleared-initializing-flag", path=str(path), flags=cleared)
        except (OSError, hotrestart.SharedMemoryMismatchError) as error:
            self.log.warning("shm-clear-failed", path=str(path), error=str(error))
