"""The launch shell: one start attempt, from the bootstrap's validation to our Envoy LIVE and recorded.

An attempt takes the run-dir lock, observes (state file, admin /server_info, bound hot-restart sockets),
asks agent/startplan.py what to do, and carries the plan out: collect the bootstrap's verdict (started by
agent/preflight.py before the lock), clear a stale INITIALIZING flag before a takeover, spawn Envoy
(agent/envoy.py), wait until it is LIVE at its epoch, and record each step in the state file, the view
and the metrics. The lock is held until our Envoy is LIVE or dead, so no two Envoys of the pod ever
initialise at once (which is what makes clearing a stale INITIALIZING flag safe).
A bootstrap Envoy rejects fails the attempt before any Envoy is spawned: a hot-restart child that dies in
init has already made the live Envoy close its admin API for good (ShutdownAdmin).
A takeover child not LIVE by the take-over deadline is stopped, and unless it already told its parent to
drain (the shm INITIALIZING flag is clear), killed, its flag cleared, and the attempt failed for good: the
old Envoy serves on (docs/contract.md "Take-over deadline"). A takeover child whose admin API answered and
then went silent is handled alike, sooner, by the stalled-child watchdog (agent/watchdog.py, docs/contract.md
"A stalled child"). Around a takeover both Envoys' listener sets are read from the admin API and compared
(agent/listeners.py).
Retrying a failed attempt is the supervisor's decision; this module only says whether it may.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from agent import envoystats, hotrestart, startplan, takeover
from agent.admin import AdminError, EnvoyAdmin
from agent.bootstrap import bootstrap_file, write_bootstrap_file
from agent.config import AgentConfig
from agent.decisions import (
    INITIALIZING_FLAG,
    LIVE,
    BootstrapInvalid,
    BootstrapValid,
    BootstrapVerdict,
    Observation,
    Refuse,
    StandBy,
    ValidationInconclusive,
    Wait,
    bootstrap_verdict,
    describe_exit,
    handshake_stalled,
    must_clear_initializing,
    takeover_deadline_passed,
)
from agent.envoy import BootstrapValidator, EnvoyLauncher, EnvoyOptions, EnvoyVersions, RunningEnvoy
from agent.logs import EventLog
from agent.metrics import AgentMetrics
from agent.preflight import Preflight, start_preflight
from agent.records import LOCK_TIMEOUT, StateRecorder
from agent.rundir import LockTimeoutError, RunDir
from agent.startplan import Launch
from agent.state import NewerSchemaError, SharedState
from agent.view import ViewKeeper
from agent.watchdog import ChildWatchdog

LIVE_TIMEOUT = 60.0
POLL = 0.05
# Validation takes ~0.1 s; a busy node may stretch it, and a hung one is retried, not refused.
VALIDATE_TIMEOUT = 60.0

StartOutcome = Literal["started", "refused", "failed", "aborted", "standing-by"]


class StartFailedError(RuntimeError):
    """One start attempt failed and may be retried."""


class StartAbortedError(RuntimeError):
    """SIGTERM arrived while starting."""


class ParentHungError(RuntimeError):
    """The live Envoy never answered our child's hot-restart handshake: fail for good, do not retry."""


class TakeoverDeadlineError(RuntimeError):
    """Our child was not LIVE by the take-over deadline and never told its parent to drain: it was ended,
    the parent serves on; fail for good (the controller rolls back)."""


class ChildStalledError(RuntimeError):
    """Our child's admin API went silent before LIVE and it never told its parent to drain: it was ended,
    the parent serves on; fail for good (docs/contract.md "A stalled child")."""


# How long the stand-in for a child ended at its deadline keeps its socket: longer than the ten 1 s
# retries a parent makes to deliver a reply (hot_restarting_base.cc, sendHotRestartMessage).
DEADLINE_STAND_IN_SECONDS = 15.0


@dataclass(frozen=True)
class Started:
    """Our Envoy is LIVE and recorded as the active one; `live_at` is time.monotonic() at that moment."""

    envoy: RunningEnvoy
    launch: Launch
    live_at: float


class EnvoyStarter:
    """Carries out start attempts for this slot; one at a time, from the supervisor's thread."""

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
        records: StateRecorder,
        view: ViewKeeper,
        metrics: AgentMetrics,
        log: EventLog,
        stop: threading.Event,
        started_at: float,
        preflight: Preflight | None,
    ) -> None:
        """`started_at`: time.monotonic() at agent start; `preflight`: the first attempt's validation."""
        self.config = config
        self.environ = environ
        self.binary = binary
        self.versions = versions
        self.launcher = launcher
        self.validator = validator
        self.admin = admin
        self.rundir = rundir
        self.records = records
        self.view = view
        self.metrics = metrics
        self.log = log
        self.stop = stop
        self.started_at = started_at
        self._preflight = preflight
        self._went_live = False
        self._validated: str | None = None  # the last bootstrap text Envoy's validate mode accepted
        # (epoch, base) added to our Envoy's counters on /stats/prometheus (agent/envoystats.py).
        self.stats_base: tuple[int, dict[str, float]] = (-1, {})
        # Bound for the agent's lifetime once a handshake stalled (see ChildStandIn).
        self.child_stand_ins: list[hotrestart.ChildStandIn] = []
        self.parity = takeover.ListenerParityCheck(
            admin=admin, rundir=rundir, view=view, metrics=metrics, log=log
        )
        # Watches our hot-restart child from its spawn until the Envoy it replaced exits (the supervisor
        # carries on after LIVE).
        self.watchdog = ChildWatchdog(
            config,
            admin=admin,
            hot_restart_version=versions.hot_restart_version,
            view=view,
            metrics=metrics,
            log=log,
        )

    def attempt(self) -> Started | Literal["refused", "failed", "standing-by"]:
        """One attempt: Started, refused, failed for good or standing by; StartFailedError when a retry
        may succeed.

        Raises StartAbortedError when SIGTERM arrives meanwhile.
        """
        # Validation runs while we take the lock and observe; the first one started even earlier.
        preflight, self._preflight = self._preflight, None
        if preflight is None:
            preflight = start_preflight(
                self.config,
                self.environ,
                binary=self.binary,
                validator=self.validator,
                known_valid=self._validated,
            )
        try:
            if self.stop.is_set():
                raise StartAbortedError
            with self.rundir.locked(timeout=LOCK_TIMEOUT):
                return self._attempt_locked(preflight)
        except LockTimeoutError as error:
            self.metrics.failures.labels(reason="lock_timeout").inc()
            raise StartFailedError(str(error)) from None
        finally:
            preflight.cancel()

    def _attempt_locked(self, preflight: Preflight) -> Started | Literal["refused", "failed", "standing-by"]:
        try:
            state = self.records.read()
        except NewerSchemaError as error:
            # Written by a newer agent: refuse without writing, so the newer one finds its file intact.
            self._refuse(str(error), failure="newer_schema")
            return "refused"
        admin_view = self.admin.server_info()
        observation = Observation(
            state=state,
            admin=admin_view,
            bound_socket_ids=hotrestart.read_bound_parent_ids(self.config.base_id),
            own_hot_restart_version=self.versions.hot_restart_version,
            fence=self.rundir.read_fence(),
        )
        plan = startplan.plan_start(observation, self.config, envoy_version=self.versions.version)
        decision = plan.decision if isinstance(plan, Launch) else plan
        self.log.event(
            "start-decision",
            decision=type(decision).__name__,
            detail=str(decision),
            admin_epoch=None if admin_view is None else admin_view.epoch,
            bound_socket_ids=sorted(observation.bound_socket_ids),
        )
        if isinstance(plan, StandBy):
            self.view.set(phase="retired", error=plan.reason)
            self.log.warning("standing-by", reason=plan.reason)
            state = startplan.standby_state(
                state, self.config.slot, bound_socket_ids=observation.bound_socket_ids, now=time.time()
            )
            self.records.record(state, "standing-by", epoch=None, detail=plan.reason)
            return "standing-by"
        if isinstance(plan, Refuse):
            self._refuse(plan.reason, failure=plan.failure)
            state = startplan.refused_state(state, self.config.slot, reason=plan.reason, now=time.time())
            self.records.record(state, "refused", epoch=None, detail=plan.reason)
            return "refused"
        if isinstance(plan, Wait):
            raise StartFailedError(plan.reason)
        self.view.set(phase=plan.phase, epoch=plan.epoch)
        if preflight.text is None:
            return self._failed(plan, str(preflight.render_error), permanent=True)
        verdict = self._await_verdict(preflight)
        if isinstance(verdict, BootstrapInvalid):
            # Before any hot restart: the live Envoy keeps serving with its admin API.
            return self._failed(
                plan, verdict.error, permanent=True, failure="invalid_bootstrap", event="bootstrap-invalid"
            )
        if isinstance(verdict, ValidationInconclusive):
            return self._failed(plan, verdict.reason, permanent=False)
        assert isinstance(verdict, BootstrapValid)
        if plan.takeover:
            self._clear_stale_initializing(plan.live_state)
        stats = self._watch_stats(state, plan)
        if stats is not None:
            state = self.records.read()  # with the step _watch_stats recorded
        before = self.parity.before(plan.parent_epoch) if plan.parent_epoch is not None else None
        envoy = self._spawn(plan, preflight.text)
        # Recorded after the spawn so the state file's fsyncs overlap Envoy's start, not precede it.
        state = startplan.spawned_state(state, plan, pid=envoy.pid, now=time.time())
        self.records.record(state, "envoy-starting", epoch=plan.epoch, detail=str(plan.decision))
        try:
            self._wait_live(envoy, plan, stats=stats)
        except ParentHungError as error:
            self.watchdog.stop()
            envoy.kill()
            self._absorb_replies_to(plan.epoch)
            return self._failed(
                plan, str(error), permanent=True, failure="parent_hung", event="handshake-stalled"
            )
        except TakeoverDeadlineError as error:
            self.watchdog.stop()
            return self._failed(
                plan, str(error), permanent=True, failure="takeover_deadline", event="takeover-deadline"
            )
        except ChildStalledError as error:
            return self._failed(
                plan, str(error), permanent=True, failure="child_stalled", event="child-stalled-abandoned"
            )
        except (StartFailedError, StartAbortedError) as error:
            self.watchdog.stop()
            if envoy.poll() is None:
                envoy.kill()
            if isinstance(error, StartAbortedError):
                raise
            return self._failed(plan, str(error), permanent=False)
        if stats is not None and not stats.done:
            with contextlib.suppress(AdminError):
                stats.observe_after_live(self.admin.prometheus_stats())
        self._carry_stats(plan, stats)
        started = self._live(envoy, plan)
        if before is not None and plan.parent_epoch is not None:
            self.parity.after(parent_epoch=plan.parent_epoch, epoch=plan.epoch, before=before)
        return started

    def _refuse(self, reason: str, *, failure: str) -> None:
        """This slot never starts Envoy: say why in the view, the log and the metrics."""
        self.metrics.failures.labels(reason=failure).inc()
        self.view.set(phase="failed", error=reason)
        self.log.error("takeover-refused", reason=reason)

    def _spawn(self, plan: Launch, bootstrap_text: str) -> RunningEnvoy:
        bootstrap = write_bootstrap_file(bootstrap_file(self.config, plan.epoch), bootstrap_text)
        envoy = self.launcher.start(
            EnvoyOptions(
                binary=self.binary,
                bootstrap=bootstrap,
                epoch=plan.epoch,
                base_id=plan.base_id,
                drain_seconds=plan.drain_seconds,
                parent_shutdown_seconds=plan.parent_shutdown_seconds,
                skip_parent_stats=self.config.skip_hot_restart_parent_stats,
            )
        )
        self.log.event("envoy-spawned", pid=envoy.pid)
        return envoy

    def _live(self, envoy: RunningEnvoy, plan: Launch) -> Started:
        """Record our Envoy as the active one and report it serving (lock held)."""
        takeover_seconds = time.monotonic() - self.started_at
        state = startplan.live_state(self.records.read(), plan, pid=envoy.pid, now=time.time())
        how = (
            f"took over from epoch {plan.parent_epoch}"
            if plan.takeover
            else "fresh start: no Envoy of the pod was live to take over from"
        )
        self.records.record(
            state, "envoy-live", epoch=plan.epoch, detail=f"{how}; {takeover_seconds:.3f}s after agent start"
        )
        self.view.adopt(envoy)
        if not self._went_live:  # the metric is agent start -> first LIVE; restarts do not count
            self._went_live = True
            self.metrics.takeover_seconds.set(takeover_seconds)
        if plan.takeover:
            self.metrics.takeovers.inc()
        else:
            self.metrics.fresh_starts.inc()
        live_at = time.monotonic()
        self.log.event(
            "envoy-live",
            pid=envoy.pid,
            takeover_seconds=round(takeover_seconds, 3),
            start="takeover" if plan.takeover else "fresh",
        )
        return Started(envoy=envoy, launch=plan, live_at=live_at)

    def _failed(
        self,
        plan: Launch,
        reason: str,
        *,
        permanent: bool,
        failure: str = "start_failed",
        event: str = "envoy-start-failed",
    ) -> Literal["failed"]:
        """Record a failed attempt (lock held); permanent failures are not retried."""
        self.log.error(event, error=reason, permanent=permanent)
        self.view.set(error=reason)
        state = startplan.failed_attempt_state(
            self.records.read(), plan, reason=reason, permanent=permanent, now=time.time()
        )
        self.records.record(state, event, epoch=plan.epoch, detail=reason)
        if permanent:
            self.metrics.failures.labels(reason=failure).inc()
            self.view.set(phase="failed")
            return "failed"
        raise StartFailedError(reason)

    def _await_verdict(self, preflight: Preflight) -> BootstrapVerdict:
        """Wait for the preflight's validation; SIGTERM cuts the wait short."""
        if preflight.known_valid:
            self.log.event("bootstrap-validated", verdict="BootstrapValid", cached=True)
            return BootstrapValid()
        verdict = self._validation_verdict(preflight)
        if isinstance(verdict, BootstrapValid):
            self._validated = preflight.text
        return verdict

    def _validation_verdict(self, preflight: Preflight) -> BootstrapVerdict:
        validation = preflight.validation
        if validation is None:
            return ValidationInconclusive(f"cannot run bootstrap validation: {preflight.spawn_error}")
        waiting = time.monotonic()
        deadline = waiting + VALIDATE_TIMEOUT
        while (run := validation.poll_result(timeout=0.2)) is None:
            if self.stop.is_set():
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

    def _wait_live(self, envoy: RunningEnvoy, plan: Launch, *, stats: envoystats.StatsWatch | None) -> None:
        """Until the admin API answers LIVE for our epoch; StartFailedError if Envoy exits or times out,
        ParentHungError if a takeover never gets past the handshake with its parent.

        Meanwhile `stats` reads the parent's exposition until its admin closes, then ours once merged.
        """
        spawned = time.monotonic()
        deadline = spawned + LIVE_TIMEOUT
        takeover_deadline = float(self.config.takeover_deadline_seconds)
        answered = False
        if plan.takeover:
            self.watchdog.watch(envoy.epoch)
        while True:
            returncode = envoy.poll()
            if returncode is not None:
                raise StartFailedError(
                    f"Envoy epoch {envoy.epoch} {describe_exit(returncode)} before it was LIVE"
                )
            if stats is not None and not stats.done:
                with contextlib.suppress(AdminError):
                    stats.observe(self.admin.prometheus_stats())
            info = self.admin.server_info()
            self.watchdog.saw(None if info is None else info.epoch)
            if info is not None and info.epoch == envoy.epoch:
                answered = True
                if info.state == LIVE:
                    return
            if self.watchdog.check(envoy, live=False) == "abandon":
                self._absorb_replies_to(plan.epoch, release_after=DEADLINE_STAND_IN_SECONDS)
                raise ChildStalledError(
                    f"Envoy epoch {plan.epoch} stopped answering its admin API before it was LIVE and "
                    "had not told its parent to drain; ended it, the old Envoy "
                    f"(epoch {plan.parent_epoch}) keeps serving, and this slot does not retry"
                )
            if self.stop.is_set():
                raise StartAbortedError
            if handshake_stalled(
                takeover=plan.takeover,
                seconds_since_spawn=time.monotonic() - spawned,
                own_epoch_answered=answered,
            ):
                raise ParentHungError(
                    f"the live Envoy (epoch {plan.parent_epoch}) did not answer the hot-restart handshake "
                    f"of epoch {plan.epoch} within {time.monotonic() - spawned:.0f}s: it is hung or "
                    "stopped; it keeps the listeners, and this slot does not retry"
                )
            if takeover_deadline_passed(
                takeover=plan.takeover,
                seconds_since_spawn=time.monotonic() - spawned,
                deadline_seconds=takeover_deadline,
            ):
                self._end_at_deadline(envoy, plan, seconds=time.monotonic() - spawned)
                # Resumed: it has told its parent to drain, only it can take the traffic now.
                takeover_deadline = float("inf")
                deadline = time.monotonic() + LIVE_TIMEOUT
            if time.monotonic() > deadline:
                raise StartFailedError(f"Envoy epoch {envoy.epoch} not LIVE after {LIVE_TIMEOUT:.0f}s")
            time.sleep(POLL)

    def _end_at_deadline(self, envoy: RunningEnvoy, plan: Launch, *, seconds: float) -> None:
        """Our child missed its take-over deadline: resumed if it already told its parent to drain, else
        ended (agent/takeover.py) and TakeoverDeadlineError raised (lock held)."""
        action = takeover.end_at_deadline(
            envoy,
            config=self.config,
            hot_restart_version=self.versions.hot_restart_version,
            seconds=seconds,
            log=self.log,
        )
        if action == "resume":
            return
        self._absorb_replies_to(plan.epoch, release_after=DEADLINE_STAND_IN_SECONDS)
        raise TakeoverDeadlineError(
            f"Envoy epoch {plan.epoch} was not LIVE {seconds:.1f}s after its spawn (take-over deadline "
            f"{self.config.takeover_deadline_seconds}s; in xds mode: no listeners and clusters from the "
            f"control plane at {self.config.xds_address or '-'}); ended it, the old Envoy (epoch "
            f"{plan.parent_epoch}) keeps serving, and this slot does not retry"
        )

    def _watch_stats(self, state: SharedState, plan: Launch) -> envoystats.StatsWatch | None:
        """Before a takeover: stop the old agent serving its Envoy's stats (we record `taking-over`),
        then read them once; None when the live Envoy's admin API does not answer (no continuity)."""
        if not plan.takeover or plan.parent_epoch is None:
            return None
        preparing = startplan.preparing_state(state, plan, now=time.time())
        self.records.record(
            preparing, "taking-over", epoch=plan.epoch, detail="the old agent stops serving stats"
        )
        watch = envoystats.StatsWatch(
            parent_epoch=plan.parent_epoch,
            epoch=plan.epoch,
            skip_parent_stats=self.config.skip_hot_restart_parent_stats,
        )
        try:
            watch.observe(self.admin.prometheus_stats())
        except AdminError as error:
            self.log.warning("stats-continuity-lost", why=f"the live Envoy's admin did not answer: {error}")
            return None
        if watch.parent is None:
            self.log.warning("stats-continuity-lost", why="the admin port answered for another Envoy")
            return None
        return watch

    def _carry_stats(self, plan: Launch, stats: envoystats.StatsWatch | None) -> None:
        """Record the base our Envoy's counters continue from (lock held); a fresh start begins at 0."""
        base: dict[str, float] = {}
        if stats is not None and stats.parent is not None and stats.first is not None:
            previous = self.rundir.read_stats_base()
            carried = previous[1] if previous is not None and previous[0] == plan.parent_epoch else {}
            base = envoystats.next_base(carried, parent=stats.parent, first=stats.first)
            if stats.late:
                why = "our Envoy was LIVE before its merged stats were read: its first requests go uncounted"
                self.log.warning("stats-first-read-late", why=why)
        elif plan.takeover:
            self.log.warning("stats-continuity-lost", why="no exposition of both Envoys around the takeover")
        self.stats_base = (plan.epoch, base)
        try:
            self.rundir.write_stats_base(plan.epoch, base)
        except OSError as error:
            self.log.error("stats-base-write-failed", error=str(error))

    def _absorb_replies_to(self, epoch: int, *, release_after: float | None = None) -> None:
        """Keep our dead child's socket bound so the parent, if it resumes, does not abort on its reply;
        `release_after` seconds later let go of it (None: for the agent's lifetime)."""
        try:
            stand_in = hotrestart.ChildStandIn(
                base_id=self.config.base_id,
                epoch=epoch,
                on_message=lambda what: self.log.event("child-stand-in-message", message=what),
            )
        except OSError as error:
            self.log.error("child-stand-in-failed", error=str(error))
            return
        self.child_stand_ins.append(stand_in)
        self.log.warning("child-stand-in-bound", epoch=epoch, release_after=release_after)
        if release_after is not None:
            # The next take-over's child binds the same name (epoch % 3): free it well before then.
            timer = threading.Timer(release_after, self._release_stand_in, args=(stand_in,))
            timer.daemon = True
            timer.start()

    def _release_stand_in(self, stand_in: hotrestart.ChildStandIn) -> None:
        stand_in.close()
        with contextlib.suppress(ValueError):
            self.child_stand_ins.remove(stand_in)
        self.log.event("child-stand-in-released")

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
