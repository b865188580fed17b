"""The supervisor: one per sidecar container; owns this slot's Envoy and decides what comes next.

Orchestration only; every step is a module of its own (decisions in agent/decisions.py and
agent/startplan.py, the I/O in the shells named below):
- start (agent/launch.py): render the bootstrap and start `envoy --mode validate` on it
  (agent/preflight.py); meanwhile take the run-dir lock and observe, then fresh start at epoch 0,
  hot-restart takeover at N+1, refuse (hot-restart version mismatch), or wait and retry (tenacity, here).
  The lock is held until our Envoy is LIVE or dead, so no two Envoys of the pod ever initialise at once.
- after a takeover (agent/handover.py): follow the replaced Envoy until its parent socket disappears;
  if it vanished before our Terminate was due, bind its socket and stand in for it (envoy#7468). Meanwhile
  the stalled-child watchdog (agent/watchdog.py) unblocks our Envoy if the hot-restart wedge holds it.
- our Envoy exits: replaced (retire, never restart), crashed (restart with backoff at the right epoch),
  or stopped by us. Replaced and still running well past its parent-shutdown time: hung (its child's
  Terminate never came, or it cannot act on it), so we SIGKILL it; the new agent stands in for it.
- SIGTERM/SIGINT: active -> graceful drain (agent/drain.py), wait for zero connections or the drain
  deadline, stop Envoy, exit 0. Replaced, retired, failed or standby -> exit 0 at once without touching
  the listeners (they belong to the other slot's Envoy); a replaced slot records its release first (the
  controller's reset: its next start may serve), an active one voids a release the same pod stop made.
It must not touch the other slot's Envoy except through Envoy's own hot-restart protocol.
"""

from __future__ import annotations

import threading
import time

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

from agent import envoystats, takeover
from agent.admin import AdminError, EnvoyAdmin
from agent.config import AgentConfig
from agent.decisions import (
    ExitAction,
    Restart,
    Retire,
    Stopped,
    after_envoy_exit,
    describe_exit,
    exit_state,
    released_on_sigterm,
    replaced_envoy_hung,
    voided_by_pod_stop,
)
from agent.drain import drain_gracefully
from agent.envoy import RunningEnvoy
from agent.handover import Following, HandOver
from agent.launch import EnvoyStarter, StartAbortedError, Started, StartFailedError, StartOutcome
from agent.listeners import Listener
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.records import StateRecorder
from agent.state import SharedState, replaced_by_other, role_of, with_slot, with_stopped
from agent.status import AgentView
from agent.view import ViewKeeper

TAKEOVER_ATTEMPTS = 3
# How often the serving agent re-reads its Envoy's listeners into LISTENERS_FILE (docs/contract.md).
LISTENERS_REFRESH_SECONDS = 5.0


class Supervisor:
    """This slot's agent: starts its Envoy, watches it and the one it replaced, and drains on SIGTERM."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        starter: EnvoyStarter,
        records: StateRecorder,
        view: ViewKeeper,
        admin: EnvoyAdmin,
        metrics: AgentMetrics,
        log: EventLog,
        stop: threading.Event,
    ) -> None:
        """The starter shares `records`, `view` and `stop` (set by `request_stop`); cli.py wires them."""
        self.config = config
        self.starter = starter
        self.records = records
        self.view_keeper = view
        self.admin = admin
        self.metrics = metrics
        self.log = log
        self.stop_requested = stop
        self.handover = HandOver(config, admin=admin, records=records, metrics=metrics, log=log)
        self._next_replaced_check = 0.0
        self._replaced_at: float | None = None  # time.monotonic() when we saw our Envoy replaced
        self._killed_hung = False
        self._next_listeners_refresh = 0.0
        self._listeners: frozenset[Listener] | None = None

    # -- what the status server reads ------------------------------------------------------------
    def view(self) -> AgentView:
        """This agent's view for /status and /healthz/ready."""
        return self.view_keeper.view()

    def shared_state(self) -> SharedState:
        """The shared state file as it is now (initial if missing or unreadable)."""
        return self.records.snapshot()

    def envoy_stats(self) -> tuple[int, bytes]:
        """GET /stats/prometheus: our Envoy's exposition with its counters carried across hot restarts.

        Empty (200) unless our Envoy is the active one and holds the admin port, so a scraper of both
        slots gets each series once; 503 when the admin API does not answer.
        """
        envoy = self.view_keeper.envoy
        running = self.view().envoy_running
        state = self.shared_state()
        if envoy is None or role_of(state, self.config.slot, envoy_running=running) != "active":
            return 200, b""
        if state.slots[self.config.other_slot].phase == "taking-over":
            return 200, b""  # the new agent carries our counters on from its own last read of them
        try:
            text = self.admin.prometheus_stats()
        except AdminError as error:
            return 503, f"Envoy's admin API did not answer: {error}\n".encode()
        if envoystats.gauge(text, "envoy_server_hot_restart_epoch") != envoy.epoch:
            return 200, b""
        epoch, base = self.starter.stats_base
        return 200, envoystats.rebase(text, base if epoch == envoy.epoch else {}).encode()

    # -- lifecycle --------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        """Backoff sleep that SIGTERM cuts short."""
        self.stop_requested.wait(seconds)

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: make `run` drain (if we are active) and return."""
        self.stop_requested.set()

    def run(self) -> int:
        """Start our Envoy, watch it until a stop is requested, then shut down; the process exit code."""
        versions = self.starter.versions
        self.log.event(
            "agent-started",
            envoy_version=versions.version,
            hot_restart_version=versions.hot_restart_version,
            base_id=self.config.base_id,
        )
        self.start(attempts=TAKEOVER_ATTEMPTS)
        while not self.stop_requested.is_set():
            self.stop_requested.wait(0.1)
            self.tick()
        return self.shutdown()

    def tick(self) -> None:
        """One look at our Envoy, the Envoy we replaced, our stand-in, and whether we were replaced."""
        envoy = self.view_keeper.envoy
        if envoy is not None:
            returncode = envoy.poll()
            if returncode is not None:
                self.on_envoy_exit(envoy, returncode)
                return
        self.handover.check_parent(envoy)
        self._watch_child(envoy)
        if envoy is not None and time.monotonic() >= self._next_replaced_check:
            self._next_replaced_check = time.monotonic() + 0.5
            self._notice_replaced(envoy)
            self._end_if_hung(envoy)
        if envoy is not None and time.monotonic() >= self._next_listeners_refresh:
            self._next_listeners_refresh = time.monotonic() + LISTENERS_REFRESH_SECONDS
            self._refresh_listeners(envoy)
        self.handover.check_stand_in()

    def _watch_child(self, envoy: RunningEnvoy | None) -> None:
        """After our takeover, until the replaced Envoy exits: unblock our Envoy if its main thread is stuck
        (docs/contract.md "A stalled child"); the launch watched it until LIVE."""
        watchdog = self.starter.watchdog
        if envoy is None or self.handover.following is None:
            if watchdog.watching:
                watchdog.stop()
            return
        watchdog.poll_live(envoy)

    def _refresh_listeners(self, envoy: RunningEnvoy) -> None:
        """While our Envoy serves and no take-over runs: keep LISTENERS_FILE up to date."""
        state = self.shared_state()
        if self.view_keeper.phase != "serving" or state.active_slot != self.config.slot:
            return
        if state.slots[self.config.other_slot].phase == "taking-over":
            return
        self._listeners = takeover.refresh_record(
            self.admin, self.starter.rundir, epoch=envoy.epoch, known=self._listeners, log=self.log
        )

    def _end_if_hung(self, envoy: RunningEnvoy) -> None:
        """Our replaced Envoy outlived its parent-shutdown time by far: it is hung, SIGKILL it."""
        if self._replaced_at is None or self._killed_hung:
            return
        if not replaced_envoy_hung(
            seconds_since_replaced=time.monotonic() - self._replaced_at,
            parent_shutdown_seconds=self.config.parent_shutdown_seconds,
        ):
            return
        self._killed_hung = True
        self.metrics.failures.labels(reason="hung").inc()
        self.log.error(
            "replaced-envoy-hung",
            pid=envoy.pid,
            why="still running long past its parent-shutdown time; killed (the new Envoy owns the listeners)",
        )
        envoy.kill()

    def _notice_replaced(self, envoy: RunningEnvoy) -> None:
        """Our Envoy still runs but another took over: it is draining until its Terminate."""
        if self.view_keeper.phase != "serving" or not replaced_by_other(
            self.shared_state(), self.config.slot, epoch=envoy.epoch
        ):
            return
        self.view_keeper.set(phase="draining")
        self._replaced_at = time.monotonic()
        self.log.event("replaced", why="another Envoy took over; ours drains until its parent shutdown")

    # -- starting ---------------------------------------------------------------------------------
    def start(self, *, attempts: int | None) -> StartOutcome:
        """Start our Envoy, retrying transient failures with exponential backoff (None: forever)."""
        retrying = Retrying(
            stop=stop_never if attempts is None else stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=15),
            retry=retry_if_exception_type(StartFailedError),
            sleep=self._sleep,
            before_sleep=lambda rs: self.log.warning(
                "start-retry",
                attempt=rs.attempt_number,
                error=str(rs.outcome.exception() if rs.outcome else None),
            ),
        )
        try:
            result = retrying(self.starter.attempt)
        except StartAbortedError:
            self._fail("stopped (SIGTERM) while starting Envoy", event="start-aborted")
            return "aborted"
        except RetryError as error:
            reason = str(error.last_attempt.exception())
            self.metrics.failures.labels(reason="start_failed").inc()
            self._fail(reason, event="start-gave-up", epoch=self.view_keeper.epoch)
            return "failed"
        if not isinstance(result, Started):
            return result
        launch = result.launch
        if launch.parent_epoch is not None:
            self.handover.follow(
                Following(
                    parent_epoch=launch.parent_epoch, parent_slot=launch.parent_slot, live_at=result.live_at
                )
            )
        return "started"

    def _fail(self, reason: str, *, event: str, epoch: int | None = None) -> None:
        """This slot failed for good: say so in the view, the log and the state file."""
        self.view_keeper.set(phase="failed", error=reason)
        self.log.error(event, error=reason)
        self.records.update(
            lambda state: with_slot(
                state, self.config.slot, now=time.time(), phase="failed", epoch=epoch, error=reason
            ),
            event=event,
            epoch=epoch,
            detail=reason,
        )

    # -- our Envoy exited -----------------------------------------------------------------------
    def on_envoy_exit(self, envoy: RunningEnvoy, returncode: int) -> None:
        """Our Envoy exited: retire (it was replaced), restart (it crashed), or nothing (we stopped it)."""
        self.view_keeper.release()
        self.handover.end("our Envoy exited")
        self.log.event("envoy-exited", pid=envoy.pid, returncode=returncode)
        slot = self.config.slot
        action: ExitAction = Restart(reason=f"Envoy {describe_exit(returncode)}")

        def record_exit(state: SharedState) -> SharedState | None:
            nonlocal action
            action = after_envoy_exit(
                state, slot, epoch=envoy.epoch, returncode=returncode, stopping=self.stop_requested.is_set()
            )
            if self._killed_hung and isinstance(action, Retire):
                action = Retire(error="hung past its parent-shutdown time: killed by its agent")
            return exit_state(state, slot, action, epoch=envoy.epoch, now=time.time())

        self.records.update(
            record_exit, event="envoy-exited", epoch=envoy.epoch, detail=describe_exit(returncode)
        )
        if isinstance(action, Retire):
            self.view_keeper.set(phase="retired", error=action.error)
            self.log.event("retired", returncode=returncode)
        elif isinstance(action, Restart):
            self.metrics.failures.labels(reason="crash").inc()
            self.view_keeper.set(phase="starting", error=action.reason)
            self.log.error("envoy-crashed", error=action.reason)
            self.start(attempts=None)
        else:
            assert isinstance(action, Stopped)

    # -- SIGTERM ----------------------------------------------------------------------------------
    def _release(self) -> None:
        """A replaced slot's container is being stopped: the controller's reset releases the hold."""
        released = False

        def release(state: SharedState) -> SharedState | None:
            nonlocal released
            state_after = released_on_sigterm(state, self.config.slot, now=time.time())
            released = state_after is not None
            return state_after

        self.records.update(release, event="released", epoch=None, detail="SIGTERM while replaced")
        if released:
            self.log.event("released", why="stopped while replaced: its next start may serve")

    def shutdown(self) -> int:
        """Drain and stop our Envoy if it still owns the listeners, else leave them alone; exit code 0."""
        envoy = self.view_keeper.envoy
        if envoy is None or envoy.poll() is not None:
            self._release()
            self.log.event("exit", why="no Envoy of ours is running")
            return 0
        replaced = False

        def start_draining(state: SharedState) -> SharedState | None:
            nonlocal replaced
            replaced = state.active_slot != self.config.slot or state.epoch != envoy.epoch
            if replaced:
                return None
            now = time.time()
            state = voided_by_pod_stop(state, self.config.slot, now=now)
            return with_slot(
                state, self.config.slot, now=now, phase="draining", epoch=envoy.epoch, pid=envoy.pid
            )

        self.records.update(start_draining, event="draining", epoch=envoy.epoch, detail="SIGTERM")
        if replaced:
            self._release()
            self.log.event("exit", why="replaced: the listeners belong to the new Envoy")
            return 0
        self.view_keeper.set(phase="draining")
        started = time.monotonic()
        drain_gracefully(
            envoy,
            admin=self.admin,
            base_id=self.config.base_id,
            drain_seconds=self.config.drain_seconds,
            log=self.log,
            metrics=self.metrics,
        )
        returncode = envoy.stop(timeout=10)
        self.handover.release_stand_in("agent stopping")
        drained = time.monotonic() - started
        self.metrics.drain_seconds.set(drained)
        self.records.update(
            lambda state: with_stopped(
                state, self.config.slot, epoch=envoy.epoch, now=time.time(), error=None
            ),
            event="stopped",
            epoch=envoy.epoch,
            detail=f"drained {drained:.1f}s, Envoy {describe_exit(returncode)}",
        )
        self.view_keeper.set(phase="retired")
        self.log.event("exit", why="drained and stopped", seconds=round(drained, 3), returncode=returncode)
        return 0
