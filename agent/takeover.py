"""Two guards around a hot-restart takeover, for agent/launch.py: the take-over deadline and listener parity.

- `end_at_deadline`: our child is not LIVE by its deadline (docs/contract.md "Take-over deadline"). Stop
  it (SIGSTOP), read Envoy's shm flags, and unless it already told its parent to drain (INITIALIZING clear,
  `at_takeover_deadline` in agent/decisions.py), kill it and clear the flag it leaves set (envoy#33446).
- `ListenerParityCheck`: the serving Envoy's listeners before the spawn and ours after LIVE, compared
  (agent/listeners.py); a difference goes to /status, a metric and the log. It never fails a takeover.
  The serving agent keeps its Envoy's set in LISTENERS_FILE (`record`, `refresh_record`), the fallback
  when the old Envoy's admin API is closed.
Called with the run-dir lock held, so no other Envoy of the pod initialises meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent import hotrestart
from agent.admin import AdminError, EnvoyAdmin
from agent.config import AgentConfig
from agent.decisions import INITIALIZING_FLAG, DeadlineAction, at_takeover_deadline
from agent.envoy import RunningEnvoy
from agent.listeners import Listener, ListenerParity
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.rundir import RunDir
from agent.view import ViewKeeper


def end_at_deadline(
    envoy: RunningEnvoy, *, config: AgentConfig, hot_restart_version: str, seconds: float, log: EventLog
) -> DeadlineAction:
    """Stop our child at its deadline; "resume"d if it told its parent to drain, else killed ("abandon")."""
    layout = hotrestart.layout_from_hot_restart_version(hot_restart_version)
    path = hotrestart.shm_path(config.shm_dir, config.base_id)
    paused = envoy.pause()
    try:
        flags = hotrestart.read_flags(path, layout)
    except (OSError, hotrestart.SharedMemoryMismatchError) as error:
        log.warning("shm-check-failed", path=str(path), error=str(error))
        flags = None
    action = at_takeover_deadline(flags)
    log.warning("takeover-deadline", seconds=round(seconds, 3), paused=paused, flags=flags, action=action)
    if action == "resume":
        envoy.resume()
        return action
    envoy.kill()
    try:
        cleared = hotrestart.clear_initializing(path, layout, INITIALIZING_FLAG)
        log.warning("cleared-initializing-flag", path=str(path), flags=cleared)
    except (OSError, hotrestart.SharedMemoryMismatchError) as error:
        log.warning("shm-clear-failed", path=str(path), error=str(error))
    return action


@dataclass(frozen=True)
class ListenerParityCheck:
    """Reads both Envoys' listeners around one takeover and reports how they compare."""

    admin: EnvoyAdmin
    rundir: RunDir
    view: ViewKeeper
    metrics: AgentMetrics
    log: EventLog

    def before(self, parent_epoch: int) -> frozenset[Listener] | None:
        """The serving Envoy's listeners (before our spawn): from its admin API, else from its agent's
        LISTENERS_FILE if that is of `parent_epoch`; None when neither says."""
        try:
            return self.admin.listeners()
        except AdminError as error:
            why = f"the live Envoy's admin did not answer: {error}"
        record = self.rundir.read_listeners()
        if record is not None and record[0] == parent_epoch:
            self.log.event("listener-parity-from-record", why=why, epoch=parent_epoch)
            return record[1]
        self.log.warning("listener-parity-unknown", why=f"{why}; no record of epoch {parent_epoch}")
        return None

    def after(self, *, parent_epoch: int, epoch: int, before: frozenset[Listener]) -> None:
        """Our Envoy is LIVE: compare, show it in /status, count and log a difference."""
        try:
            after = self.admin.listeners()
        except AdminError as error:
            self.log.warning("listener-parity-unknown", why=f"our admin did not answer: {error}")
            return
        record(self.rundir, epoch, after, log=self.log)
        parity = ListenerParity(parent_epoch=parent_epoch, epoch=epoch, before=before, after=after)
        self.view.set_listeners(parity)
        if parity.same:
            self.log.event("listener-parity", listeners=len(after), detail=parity.describe())
            return
        self.metrics.listener_mismatches.inc()
        self.log.warning(
            "listener-mismatch",
            missing=[f"{x.name}@{x.address}" for x in parity.missing],
            added=[f"{x.name}@{x.address}" for x in parity.added],
        )


def record(rundir: RunDir, epoch: int, listeners: frozenset[Listener], *, log: EventLog) -> None:
    """Keep the serving Envoy's listeners in LISTENERS_FILE; a failed write is logged only."""
    try:
        rundir.write_listeners(epoch, listeners)
    except OSError as error:
        log.error("listeners-record-failed", error=str(error))


def refresh_record(
    admin: EnvoyAdmin, rundir: RunDir, *, epoch: int, known: frozenset[Listener] | None, log: EventLog
) -> frozenset[Listener] | None:
    """Our Envoy serves: re-read its listeners and record a change; the set now known (None: unknown).

    Only when the admin API answers for our epoch: during a take-over it may be the new Envoy's."""
    info = admin.server_info()
    if info is None or info.epoch != epoch:
        return known
    try:
        listeners = admin.listeners()
    except AdminError:
        return known
    if listeners != known:
        record(rundir, epoch, listeners, log=log)
    return listeners
