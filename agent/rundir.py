"""The shared run dir: an exclusive lock and the atomically replaced state file.

Both agents of a pod see this directory (a shared emptyDir). Writers hold the flock on LOCK_FILE;
readers need no lock because the state file is only ever replaced whole (write tmp, fsync, rename).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent import contract
from agent.fence import Fence, FenceFormatError, parse_fence
from agent.listeners import Listener, ListenersFormatError, parse_record, record_json
from agent.state import SharedState, StateFormatError, from_json, initial_state, to_json


class LockTimeoutError(TimeoutError):
    """Another agent held the run-dir lock for longer than we were willing to wait."""


class RunDir:
    """The run dir both agents of the pod share: its lock and its state file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / contract.STATE_FILE
        self.lock_file = path / contract.LOCK_FILE
        self.stats_base_file = path / contract.STATS_BASE_FILE
        self.listeners_file = path / contract.LISTENERS_FILE
        self.fence_file = path / contract.FENCE_FILE

    def ensure(self) -> None:
        """Create the directory if the volume is empty."""
        self.path.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the exclusive run-dir lock; flock is released by the kernel if we die holding it."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                    break
                except OSError as error:
                    if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or deadline is None:
                        raise
                    if time.monotonic() >= deadline:
                        raise LockTimeoutError(f"{self.lock_file} still locked after {timeout}s") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    def read_state(self) -> SharedState | None:
        """The current state, or None before the first agent wrote one."""
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            return None
        try:
            return from_json(json.loads(text))
        except json.JSONDecodeError as error:
            raise StateFormatError(f"{self.state_file} is not JSON: {error}") from None

    def read_or_initial(self, base_id: int) -> SharedState:
        """The current state, or the initial one before the first agent wrote one."""
        return self.read_state() or initial_state(base_id)

    def write_state(self, state: SharedState) -> None:
        """Replace the state file atomically; call with the lock held."""
        self._replace(self.state_file, json.dumps(to_json(state), indent=2, sort_keys=True).encode())

    def read_stats_base(self) -> tuple[int, dict[str, float]] | None:
        """(epoch, base) of Envoy's counters (agent/envoystats.py), or None when absent or unreadable."""
        try:
            data = json.loads(self.stats_base_file.read_text())
            epoch, base = data["epoch"], data["base"]
            if isinstance(epoch, int) and isinstance(base, dict):
                return epoch, {str(k): float(v) for k, v in base.items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def write_stats_base(self, epoch: int, base: dict[str, float]) -> None:
        """Replace the stats base file atomically; call with the lock held."""
        self._replace(self.stats_base_file, json.dumps({"epoch": epoch, "base": base}).encode())

    def read_listeners(self) -> tuple[int, frozenset[Listener]] | None:
        """(epoch, listeners) of LISTENERS_FILE, or None when absent or unreadable."""
        try:
            return parse_record(json.loads(self.listeners_file.read_text()))
        except (OSError, ValueError, ListenersFormatError):
            return None

    def write_listeners(self, epoch: int, listeners: frozenset[Listener]) -> None:
        """Replace LISTENERS_FILE atomically (only the serving agent writes it)."""
        self._replace(self.listeners_file, json.dumps(record_json(epoch, listeners)).encode())

    def read_fence(self) -> Fence | None:
        """The recorded take-over fence, or None when absent or unreadable (agent/fence.py)."""
        try:
            return parse_fence(json.loads(self.fence_file.read_text()))
        except (OSError, ValueError, FenceFormatError):
            return None

    def write_fence(self, fence: Fence) -> None:
        """Replace FENCE_FILE atomically; call with the lock held."""
        self._replace(self.fence_file, json.dumps(fence.to_json()).encode())

    def remove_fence(self) -> None:
        """Remove FENCE_FILE (no fence); call with the lock held."""
        self.fence_file.unlink(missing_ok=True)

    def _replace(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
