"""What this agent says about itself: its phase, epoch, last error and whether its Envoy runs.

The status server reads it (from its own threads); the supervisor, the launch and the hand-over write it.
Every change also moves the phase and epoch metrics and the context every later log line carries.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from agent.contract import AgentPhase, Slot
from agent.envoy import EnvoyVersions, RunningEnvoy
from agent.listeners import ListenerParity
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.progress import Stall
from agent.status import AgentView


class ViewKeeper:
    """This agent's `AgentView` and its running Envoy, behind a lock; any thread may read or write."""

    def __init__(self, *, slot: Slot, versions: EnvoyVersions, metrics: AgentMetrics, log: EventLog) -> None:
        self._lock = threading.Lock()
        self._metrics = metrics
        self._log = log
        self._envoy: RunningEnvoy | None = None
        self._view = AgentView(
            slot=slot,
            phase="starting",
            epoch=None,
            envoy_running=False,
            envoy_version=versions.version,
            hot_restart_version=versions.hot_restart_version,
            last_error=None,
        )

    @property
    def envoy(self) -> RunningEnvoy | None:
        """Our Envoy once it went LIVE, until it exits."""
        return self._envoy

    @property
    def phase(self) -> AgentPhase:
        """The phase last set."""
        return self._view.phase

    @property
    def epoch(self) -> int | None:
        """The epoch last set (of our Envoy, or of the one we are starting)."""
        return self._view.epoch

    def view(self) -> AgentView:
        """A snapshot for /status and /healthz/ready, with whether our Envoy's process is up right now."""
        with self._lock:
            envoy = self._envoy
            return replace(self._view, envoy_running=envoy is not None and envoy.poll() is None)

    def set(
        self, *, phase: AgentPhase | None = None, epoch: int | None = None, error: str | None = None
    ) -> None:
        """Change what is given, keep the rest."""
        with self._lock:
            view = self._view
            self._view = current = replace(
                view,
                phase=phase or view.phase,
                epoch=epoch if epoch is not None else view.epoch,
                last_error=error if error is not None else view.last_error,
            )
        self._metrics.phase.state(current.phase)
        self._metrics.epoch.set(-1 if current.epoch is None else current.epoch)
        self._log.bind(phase=current.phase, epoch=current.epoch)

    def set_listeners(self, parity: ListenerParity) -> None:
        """The listener parity of our last take-over (shown in /status)."""
        with self._lock:
            self._view = replace(self._view, listeners=parity)

    def set_stall(self, stall: Stall) -> None:
        """The last stalled-child verdict of this slot's Envoy (shown in /status)."""
        with self._lock:
            self._view = replace(self._view, stall=stall)

    def adopt(self, envoy: RunningEnvoy) -> None:
        """Our Envoy is LIVE and owns the listeners: serving at its epoch."""
        with self._lock:
            self._envoy = envoy
        self.set(phase="serving", epoch=envoy.epoch)

    def release(self) -> None:
        """Our Envoy exited."""
        with self._lock:
            self._envoy = None
