"""Our own graceful drain on SIGTERM, when our Envoy is the active one (the pod is going away).

Through the admin API (`POST /drain_listeners?graceful`) when it answers for our epoch, else through
Envoy's hot-restart DrainListeners message (a failed child's ShutdownAdmin closed our admin API for
good). Then wait for zero downstream connections or the drain deadline (`drain_progress`). Stopping the
Envoy afterwards is the caller's job.
"""

from __future__ import annotations

import time

from agent import hotrestart
from agent.admin import AdminError, EnvoyAdmin
from agent.decisions import drain_progress
from agent.envoy import RunningEnvoy
from agent.logs import EventLog
from agent.metrics import AgentMetrics

POLL = 0.2


def drain_gracefully(
    envoy: RunningEnvoy,
    *,
    admin: EnvoyAdmin,
    base_id: int,
    drain_seconds: int,
    log: EventLog,
    metrics: AgentMetrics,
) -> None:
    """Start the drain and return when it is done, its deadline passed, or Envoy exited; errors are logged."""
    info = admin.server_info()
    try:
        if info is not None and info.epoch == envoy.epoch:
            admin.drain_listeners_gracefully()
        else:
            hotrestart.send_drain_listeners(base_id, envoy.epoch)
            log.warning("drain-without-admin", why="the admin port does not answer for our epoch")
    except (AdminError, OSError) as error:
        log.error("drain-failed", error=str(error))
        metrics.failures.labels(reason="drain_error").inc()
        return
    log.event("draining", drain_seconds=drain_seconds)
    started = time.monotonic()
    while envoy.poll() is None:
        try:
            active: int | None = admin.active_connections()
        except AdminError:
            active = None
        progress = drain_progress(
            active_connections=active,
            seconds_draining=time.monotonic() - started,
            drain_seconds=drain_seconds,
        )
        if progress != "wait":
            log.event("drain-finished", result=progress, active_connections=active)
            return
        time.sleep(POLL)
