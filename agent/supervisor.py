"""The supervisor: one per sidecar container; owns this slot's Envoy and records every step.

Paths through it (decisions in agent/decisions.py, everything here is I/O):
- start: render the bootstrap and start `envoy --mode validate` on it (agent/preflight.py); meanwhile
  take the run-dir lock and observe (state file, admin /server_info, bound hot-restart sockets), then
  fresh start at epoch 0, hot-restart takeover at N+1, refuse (hot-restart version mismatch), or wait
  and retry (tenacity).
  A bootstrap Envoy rejects fails the start before any Envoy is spawned: a hot-restart child that dies
  in init has already made the live Envoy close its admin API for good (ShutdownAdmin). The lock is
  held until our Envoy is LIVE or dead, so no two Envoys of the pod ever initialise at once (which is
  what makes clearing a stale INITIALIZING flag safe).
- after a takeover: follow the replaced Envoy until its parent socket disappears; if it vanished before
  our Terminate was due, bind its socket and stand in for it (agent/hotrestart.py, envoy#7468).
- our Envoy exits: replaced (retire, never restart), crashed (restart with backoff at the right epoch),
  or stopped by us.
- SIGTERM/SIGINT: active -> graceful drain via the admin API, wait for zero connections or the drain
  deadline, stop Envoy, exit 0. Replaced, retired, failed or standby -> exit 0 at once without touching
  the listeners (they belong to the other slot's Envoy).
It must not touch the other slot's Envoy except through Envoy's own hot-restart protocol.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_exponential,
)

from agent import hotrestart
from agent.admin import AdminError, EnvoyAdmin
from agent.bootstrap import bootstrap_file, write_bootstrap_file
from agent.config import AgentConfig
from agent.decisions import (
    INITIALIZING_FLAG,
    LIVE,
    BootstrapInvalid,
    BootstrapValid,
    BootstrapVerdict,
    ExitAction,
    FreshStart,
    Observation,
    Refuse,
    Restart,
    Retire,
    Stopped,
    TakeOver,
    ValidationInconclusive,
    Wait,
    after_envoy_exit,
    bootstrap_verdict,
    decide_start,
    describe_exit,
    drain_progress,
    must_clear_initializing,
    parent_vanished_early,
    socket_id,
)
from agent.envoy import (
    BootstrapValidator,
    EnvoyLauncher,
    EnvoyOptions,
    EnvoyVersions,
    RunningEnvoy,
)
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.preflight import Preflight, start_preflight
from agent.rundir import LockTimeoutError, RunDir
from agent.state import (
    Phase,
    SharedState,
    Slot,
    StateFormatError,
    initial_state,
    replaced_by_other,
    slot_of_epoch,
    with_active,
    with_event,
    with_slot,
    with_stopped,
)
from agent.status import AgentView

LOCK_TIMEOUT = 120.0
LIVE_TIMEOUT = 60.0
POLL = 0.05
TAKEOVER_ATTEMPTS = 3
STAND_IN_GRACE = 30.0
# Validation takes ~0.1 s; a busy node may stretch it, and a hung one is retried, not refused.
VALIDATE_TIMEOUT = 60.0


class StartFailedError(RuntimeError):
    """One start attempt failed; tenacity decides whether to try again."""


class StartAbortedError(RuntimeError):
    """SIGTERM arrived while starting."""


StartOutcome = Literal["started", "refused", "failed", "aborted"]


@dataclass(frozen=True)
class Following:
    """The Envoy we hot-restarted from, until it exits."""

    parent_epoch: int
    parent_slot: Slot | None
    live_at: float


class Supervisor:
    def __init__(
        self,
        config: AgentConfig,
        *,
        environ: Mapping[str, str],
        binary: str,
        versions: EnvoyVersions,
        launcher: EnvoyLauncher,
        validator: BootstrapValidator,
        admin: EnvoyAdmin,
        rundir: RunDir,
        metrics: AgentMetrics,
        log: EventLog,
        started_at: float,
        preflight: Preflight | None = None,
    ) -> None:
        """`preflight`: the first start's bootstrap validation, started by the caller as early as it could."""
        self.config = config
        self.environ = environ
        self.binary = binary
        self.versions = versions
        self.launcher = launcher
        self.validator = validator
        self._preflight = preflight
        self.admin = admin
        self.rundir = rundir
        self.metrics = metrics
        self.log = log
        self.started_at = started_at
        self.stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._view = AgentView(
            slot=config.slot,
            phase="starting",
            epoch=None,
            envoy_running=False,
            envoy_version=versions.version,
            hot_restart_version=versions.hot_restart_version,
            last_error=None,
        )
        self.envoy: RunningEnvoy | None = None
        self.following: Following | None = None
        self.stand_in: hotrestart.ParentStandIn | None = None
        self.stand_in_deadline = 0.0
        self._next_replaced_check = 0.0
        self._went_live = False

    # -- what the status server reads ------------------------------------------------------------
    def view(self) -> AgentView:
        with self._lock:
            envoy = self.envoy
            return replace(self._view, envoy_running=envoy is not None and envoy.poll() is None)

    def shared_state(self) -> SharedState:
        try:
            return self.rundir.read_or_initial(self.config.base_id)
        except (OSError, StateFormatError):
            return initial_state(self.config.base_id)

    def _set(self, *, phase: Phase | None = None, epoch: int | None = None, error: str | None = None) -> None:
        with self._lock:
            view = self._view
            self._view = replace(
                view,
                phase=phase or view.phase,
                epoch=epoch if epoch is not None else view.epoch,
                last_error=error if error is not None else view.last_error,
            )
            current = self._view
        self.metrics.phase.state(current.phase)
        self.metrics.epoch.set(-1 if current.epoch is None else current.epoch)
        self.log.bind(phase=current.phase, epoch=current.epoch)

    def _update(
        self,
        edit: Callable[[SharedState], SharedState | None],
        *,
        event: str,
        epoch: int | None,
        detail: str | None = None,
    ) -> bool:
        """Read, edit and write the state under the lock; failures are logged, never raised.

        `edit` returning None means nothing to record. The data plane goes on when the run dir misbehaves.
        """
        try:
            with self.rundir.locked(timeout=LOCK_TIMEOUT):
                state = edit(self._read_state())
                if state is not None:
                    self._record(state, event, epoch=epoch, detail=detail)
                return True
        except (LockTimeoutError, OSError, StateFormatError) as error:
            self.log.error("state-write-failed", failed_event=event, error=str(error))
            return False

    def _record(
        self, state: SharedState, event: str, *, epoch: int | None, detail: str | None = None
    ) -> None:
        """Append an event and write the state (lock held by the caller); a failed write is logged only."""
        state = with_event(
            state, now=time.time(), slot=self.config.slot, event=event, epoch=epoch, detail=detail
        )
        try:
            self.rundir.write_state(state)
        except OSError as error:
            self.log.error("state-write-failed", failed_event=event, error=str(error))

    def _read_state(self) -> SharedState:
        """The state under the lock; an unreadable file is replaced by a fresh one (and said so)."""
        try:
            return self.rundir.read_or_initial(self.config.base_id)
        except StateFormatError as error:
            self.log.error("state-unreadable", error=str(error))
            return initial_state(self.config.base_id)

    # -- lifecycle --------------------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        """Backoff sleep that SIGTERM cuts short."""
        self.stop_requested.wait(seconds)

    def request_stop(self) -> None:
        self.stop_requested.set()

    def run(self) -> int:
        self.rundir.ensure()
        self.log.event(
            "agent-started",
            envoy_version=self.versions.version,
            hot_restart_version=self.versions.hot_restart_version,
            base_id=self.config.base_id,
        )
        self.start(attempts=TAKEOVER_ATTEMPTS)
        while not self.stop_requested.is_set():
            self.stop_requested.wait(0.1)
            self.tick()
        return self.shutdown()

    def tick(self) -> None:
        envoy = self.envoy
        if envoy is not None:
            returncode = envoy.poll()
            if returncode is not None:
                self.on_envoy_exit(envoy, returncode)
                return
        if self.following is not None:
            self.follow_parent(self.following)
        if envoy is not None and time.monotonic() >= self._next_replaced_check:
            self._next_replaced_check = time.monotonic() + 0.5
            self._notice_replaced(envoy)
        stand_in = self.stand_in
        if stand_in is not None and (
            stand_in.terminated.is_set() or time.monotonic() > self.stand_in_deadline
        ):
            self._release_stand_in("terminate received" if stand_in.terminated.is_set() else "deadline")

    def _notice_replaced(self, envoy: RunningEnvoy) -> None:
        """Our Envoy still runs but another took over: it is draining until its Terminate."""
        if self._view.phase != "serving" or not replaced_by_other(
            self.shared_state(), self.config.slot, epoch=envoy.epoch
        ):
            return
        self._set(phase="draining")
        self.log.event("replaced", why="another Envoy took over; ours drains until its parent shutdown")

    # -- starting ---------------------------------------------------------------------------------
    def start(self, *, attempts: int | None) -> StartOutcome:
        """Start our Envoy, retrying transient failures with exponential backoff."""
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
            outcome: StartOutcome = retrying(self._attempt_start)
            return outcome
        except StartAbortedError:
            self._fail("stopped (SIGTERM) while starting Envoy", event="start-aborted")
            return "aborted"
        except RetryError as error:
            reason = str(error.last_attempt.exception())
            self.metrics.failures.labels(reason="start_failed").inc()
            self._fail(reason, event="start-gave-up", epoch=self._view.epoch)
            return "failed"

    def _fail(self, reason: str, *, event: str, epoch: int | None = None) -> None:
        self._set(phase="failed", error=reason)
        self.log.error(event, error=reason)
        self._update(
            lambda state: with_slot(
                state, self.config.slot, now=time.time(), phase="failed", epoch=epoch, error=reason
            ),
            event=event,
            epoch=epoch,
            detail=reason,
        )

    def _attempt_start(self) -> StartOutcome:
        # Validation runs while we take the lock and observe; the first one started even earlier.
        preflight, self._preflight = self._preflight, None
        if preflight is None:
            preflight = start_preflight(
                self.config, self.environ, binary=self.binary, validator=self.validator
            )
        try:
            if self.stop_requested.is_set():
                raise StartAbortedError
            with self.rundir.locked(timeout=LOCK_TIMEOUT):
                return self._start_locked(preflight)
        except LockTimeoutError as error:
            self.metrics.failures.labels(reason="lock_timeout").inc()
            raise StartFailedError(str(error)) from None
        finally:
            preflight.cancel()

    def _await_verdict(self, preflight: Preflight) -> BootstrapVerdict:
        """Wait for the preflight's validation; SIGTERM cuts the wait short."""
        validation = preflight.validation
        if validation is None:
            return ValidationInconclusive(f"cannot run bootstrap validation: {preflight.spawn_error}")
        waiting = time.monotonic()
        deadline = waiting + VALIDATE_TIMEOUT
        while (run := validation.poll_result(timeout=0.2)) is None:
            if self.stop_requested.is_set():
                raise StartAbortedError
            if time.monotonic() > deadline:
                return bootstrap_verdict(None, "")
        verdict = bootstrap_verdict(run.returncode, run.output)
        self.log.event(
            "bootstrap-validated",
            verdict=type(verdict).__name__,
            validate_seconds=round(run.seconds, 3),
            waited_seconds=round(time.monotonic() - waiting, 3),
        )
        return verdict

    def _start_locked(self, preflight: Preflight) -> StartOutcome:
        slot, config = self.config.slot, self.config
        state = self._read_state()
        admin_view = self.admin.server_info()
        observation = Observation(
            state=state,
            admin=admin_view,
            bound_socket_ids=hotrestart.read_bound_parent_ids(config.base_id),
            own_hot_restart_version=self.versions.hot_restart_version,
        )
        decision = decide_start(observation)
        self.log.event(
            "start-decision",
            decision=type(decision).__name__,
            detail=str(decision),
            admin_epoch=None if admin_view is None else admin_view.epoch,
            bound_socket_ids=sorted(observation.bound_socket_ids),
        )
        if isinstance(decision, Refuse):
            self.metrics.failures.labels(reason="refused").inc()
            self._set(phase="failed", error=decision.reason)
            self.log.error("takeover-refused", reason=decision.reason)
            state = with_slot(state, slot, now=time.time(), phase="failed", error=decision.reason)
            self._record(state, "refused", epoch=None, detail=decision.reason)
            return "refused"
        if isinstance(decision, Wait):
            raise StartFailedError(decision.reason)
        assert isinstance(decision, FreshStart | TakeOver)
        epoch = decision.epoch
        phase: Phase = "taking-over" if isinstance(decision, TakeOver) else "starting"
        self._set(phase=phase, epoch=epoch)
        previous_slot = state.active_slot
        parent_slot = (
            slot_of_epoch(state, decision.parent_epoch, besides=slot)
            if isinstance(decision, TakeOver)
            else None
        )
        if preflight.text is None:
            return self._attempt_failed(str(preflight.render_error), epoch=epoch, phase=phase, permanent=True)
        verdict = self._await_verdict(preflight)
        if isinstance(verdict, BootstrapInvalid):
            # Before any hot restart: the live Envoy keeps serving with its admin API.
            return self._attempt_failed(
                verdict.error,
                epoch=epoch,
                phase=phase,
                permanent=True,
                failure="invalid_bootstrap",
                event="bootstrap-invalid",
            )
        if isinstance(verdict, ValidationInconclusive):
            return self._attempt_failed(verdict.reason, epoch=epoch, phase=phase, permanent=False)
        assert isinstance(verdict, BootstrapValid)
        if isinstance(decision, TakeOver):
            self._clear_stale_initializing(admin_view.state if admin_view is not None else None)
        bootstrap = write_bootstrap_file(bootstrap_file(config, epoch), preflight.text)
        envoy = self.launcher.start(
            EnvoyOptions(
                binary=self.binary,
                bootstrap=bootstrap,
                epoch=epoch,
                base_id=config.base_id,
                drain_seconds=config.drain_seconds,
                parent_shutdown_seconds=config.parent_shutdown_seconds,
            )
        )
        self.log.event("envoy-spawned", pid=envoy.pid)
        # Recorded after the spawn so the state file's fsyncs overlap Envoy's start, not precede it.
        state = with_slot(state, slot, now=time.time(), phase=phase, epoch=epoch, pid=envoy.pid)
        self._record(state, "envoy-starting", epoch=epoch, detail=str(decision))
        try:
            self._wait_live(envoy)
        except (StartFailedError, StartAbortedError) as error:
            if envoy.poll() is None:
                envoy.kill()
            if isinstance(error, StartAbortedError):
                raise
            return self._attempt_failed(str(error), epoch=epoch, phase=phase, permanent=False)
        now = time.time()
        takeover_seconds = time.monotonic() - self.started_at
        state = self._read_state()
        state = with_active(
            state,
            slot,
            now=now,
            epoch=epoch,
            pid=envoy.pid,
            envoy_version=self.versions.version,
            hot_restart_version=self.versions.hot_restart_version,
        )
        if isinstance(decision, FreshStart) and previous_slot not in (None, slot):
            # A fresh start means no Envoy of the previously active slot was running any more.
            state = with_stopped(
                state,
                previous_slot,
                epoch=state.slots[previous_slot].epoch,
                now=now,
                error=f"its Envoy was gone when {slot} started",
            )
        self._record(state, "envoy-live", epoch=epoch, detail=f"{takeover_seconds:.3f}s after agent start")
        with self._lock:
            self.envoy = envoy
        self._set(phase="serving", epoch=epoch)
        if not self._went_live:  # the metric is agent start -> first LIVE; restarts do not count
            self._went_live = True
            self.metrics.takeover_seconds.set(takeover_seconds)
        if isinstance(decision, TakeOver):
            self.metrics.takeovers.inc()
            self.following = Following(
                parent_epoch=decision.parent_epoch,
                parent_slot=parent_slot,
                live_at=time.monotonic(),
            )
        self.log.event("envoy-live", pid=envoy.pid, takeover_seconds=round(takeover_seconds, 3))
        return "started"

    def _attempt_failed(
        self,
        reason: str,
        *,
        epoch: int,
        phase: Phase,
        permanent: bool,
        failure: str = "start_failed",
        event: str = "envoy-start-failed",
    ) -> StartOutcome:
        """Record a failed attempt (lock held); permanent failures are not retried."""
        self.log.error(event, error=reason, permanent=permanent)
        self._set(error=reason)
        state = self._read_state()
        state = with_slot(
            state,
            self.config.slot,
            now=time.time(),
            phase="failed" if permanent else phase,
            epoch=epoch,
            error=reason,
        )
        self._record(state, event, epoch=epoch, detail=reason)
        if permanent:
            self.metrics.failures.labels(reason=failure).inc()
            self._set(phase="failed")
            return "failed"
        raise StartFailedError(reason)

    def _wait_live(self, envoy: RunningEnvoy) -> None:
        deadline = time.monotonic() + LIVE_TIMEOUT
        while True:
            returncode = envoy.poll()
            if returncode is not None:
                raise StartFailedError(
                    f"Envoy epoch {envoy.epoch} {describe_exit(returncode)} before it was LIVE"
                )
            info = self.admin.server_info()
            if info is not None and info.epoch == envoy.epoch and info.state == LIVE:
                return
            if self.stop_requested.is_set():
                raise StartAbortedError
            if time.monotonic() > deadline:
                raise StartFailedError(f"Envoy epoch {envoy.epoch} not LIVE after {LIVE_TIMEOUT:.0f}s")
            time.sleep(POLL)

    def _clear_stale_initializing(self, live_state: str | None) -> None:
        """Clear an INITIALIZING flag left by a child that died in init (envoy#33446); lock held."""
        layout = hotrestart.layout_from_hot_restart_version(self.versions.hot_restart_version)
        path = hotrestart.shm_path(self.config.shm_dir, self.config.base_id)
        try:
            flags = hotrestart.read_flags(path, layout)
            if flags is None or not must_clear_initializing(flags, live_state=live_state):
                return
            hotrestart.clear_initializing(path, layout, INITIALIZING_FLAG)
        except (OSError, hotrestart.SharedMemoryMismatchError) as error:
            self.log.warning("shm-check-failed", path=str(path), error=str(error))
            return
        self.log.warning("cleared-stale-initializing-flag", path=str(path), flags=flags)

    # -- after a takeover ---------------------------------------------------------------------------
    def follow_parent(self, following: Following) -> None:
        """Watch the replaced Envoy's socket; when it is gone record it, standing in if it died early."""
        envoy = self.envoy
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
        if early:
            detail += "; standing in for it until our Envoy's Terminate"
            self._start_stand_in(following.parent_epoch)
        self.log.event(
            "old-envoy-exited", parent_epoch=following.parent_epoch, seconds=round(elapsed, 3), early=early
        )
        parent = following.parent_slot
        vanished = f"Envoy epoch {following.parent_epoch} vanished during its drain" if early else None

        def retire_parent(state: SharedState) -> SharedState:
            if parent is None or state.slots[parent].phase == "retired":
                return state
            return with_stopped(state, parent, epoch=following.parent_epoch, now=time.time(), error=vanished)

        self._update(retire_parent, event="old-envoy-exited", epoch=envoy.epoch, detail=detail)

    def _start_stand_in(self, parent_epoch: int) -> None:
        try:
            self.stand_in = hotrestart.ParentStandIn(
                base_id=self.config.base_id,
                parent_epoch=parent_epoch,
                on_message=lambda what: self.log.event("stand-in-message", message=what),
            )
        except OSError as error:
            self.log.error("stand-in-failed", error=str(error))
            return
        self.stand_in_deadline = time.monotonic() + self.config.parent_shutdown_seconds + STAND_IN_GRACE
        self.log.warning("stand-in-bound", parent_epoch=parent_epoch)

    def _release_stand_in(self, why: str) -> None:
        stand_in, self.stand_in = self.stand_in, None
        if stand_in is not None:
            stand_in.close()
            self.log.event("stand-in-released", why=why)

    # -- our Envoy exited -----------------------------------------------------------------------
    def on_envoy_exit(self, envoy: RunningEnvoy, returncode: int) -> None:
        with self._lock:
            self.envoy = None
        self.following = None
        self._release_stand_in("our Envoy exited")
        self.log.event("envoy-exited", pid=envoy.pid, returncode=returncode)
        action: ExitAction = Restart(reason=f"Envoy {describe_exit(returncode)}")

        def record_exit(state: SharedState) -> SharedState | None:
            nonlocal action
            action = after_envoy_exit(
                state,
                self.config.slot,
                epoch=envoy.epoch,
                returncode=returncode,
                stopping=self.stop_requested.is_set(),
            )
            now, slot = time.time(), self.config.slot
            if isinstance(action, Retire):
                state = with_stopped(state, slot, epoch=envoy.epoch, now=now, error=action.error)
                return with_event(state, now=now, slot=slot, event="retired", epoch=envoy.epoch)
            if isinstance(action, Restart):
                state = with_slot(
                    state, slot, now=now, phase="starting", epoch=envoy.epoch, error=action.reason
                )
                return with_event(state, now=now, slot=slot, event="envoy-crashed", epoch=envoy.epoch)
            return None

        self._update(record_exit, event="envoy-exited", epoch=envoy.epoch, detail=describe_exit(returncode))
        if isinstance(action, Retire):
            self._set(phase="retired", error=action.error)
            self.log.event("retired", returncode=returncode)
        elif isinstance(action, Restart):
            self.metrics.failures.labels(reason="crash").inc()
            self._set(phase="starting", error=action.reason)
            self.log.error("envoy-crashed", error=action.reason)
            self.start(attempts=None)
        else:
            assert isinstance(action, Stopped)

    # -- SIGTERM ----------------------------------------------------------------------------------
    def shutdown(self) -> int:
        envoy = self.envoy
        if envoy is None or envoy.poll() is not None:
            self.log.event("exit", why="no Envoy of ours is running")
            return 0
        replaced = False

        def start_draining(state: SharedState) -> SharedState | None:
            nonlocal replaced
            replaced = state.active_slot != self.config.slot or state.epoch != envoy.epoch
            if replaced:
                return None
            return with_slot(
                state, self.config.slot, now=time.time(), phase="draining", epoch=envoy.epoch, pid=envoy.pid
            )

        self._update(start_draining, event="draining", epoch=envoy.epoch, detail="SIGTERM")
        if replaced:
            self.log.event("exit", why="replaced: the listeners belong to the new Envoy")
            return 0
        self._set(phase="draining")
        started = time.monotonic()
        self._drain(envoy)
        returncode = envoy.stop(timeout=10)
        self._release_stand_in("agent stopping")
        drained = time.monotonic() - started
        self.metrics.drain_seconds.set(drained)
        self._update(
            lambda state: with_stopped(
                state, self.config.slot, epoch=envoy.epoch, now=time.time(), error=None
            ),
            event="stopped",
            epoch=envoy.epoch,
            detail=f"drained {drained:.1f}s, Envoy {describe_exit(returncode)}",
        )
        self._set(phase="retired")
        self.log.event("exit", why="drained and stopped", seconds=round(drained, 3), returncode=returncode)
        return 0

    def _drain(self, envoy: RunningEnvoy) -> None:
        """Graceful drain: admin /drain_listeners?graceful, else Envoy's hot-restart DrainListeners."""
        info = self.admin.server_info()
        try:
            if info is not None and info.epoch == envoy.epoch:
                self.admin.drain_listeners_gracefully()
            else:
                # A failed child's ShutdownAdmin closed our admin API; Envoy's own protocol still works.
                hotrestart.send_drain_listeners(self.config.base_id, envoy.epoch)
                self.log.warning("drain-without-admin", why="the admin port does not answer for our epoch")
        except (AdminError, OSError) as error:
            self.log.error("drain-failed", error=str(error))
            self.metrics.failures.labels(reason="drain_error").inc()
            return
        self.log.event("draining", drain_seconds=self.config.drain_seconds)
        started = time.monotonic()
        while envoy.poll() is None:
            try:
                active: int | None = self.admin.active_connections()
            except AdminError:
                active = None
            progress = drain_progress(
                active_connections=active,
                seconds_draining=time.monotonic() - started,
                drain_seconds=self.config.drain_seconds,
            )
            if progress != "wait":
                self.log.event("drain-finished", result=progress, active_connections=active)
                return
            time.sleep(0.2)
