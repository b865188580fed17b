"""The agent's writes to the shared state file: read, edit, append the step to the history, write.

Every write happens under the run-dir lock and every failure is logged, never raised: the data plane goes
on when the run dir misbehaves. The edits themselves are pure (agent/state.py, agent/startplan.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.contract import Slot
from agent.logs import EventLog
from agent.rundir import LockTimeoutError, RunDir
from agent.state import NewerSchemaError, SharedState, StateFormatError, initial_state, with_event

LOCK_TIMEOUT = 120.0


class StateRecorder:
    """Records this slot's steps in the shared state file (agent/rundir.py does the file I/O)."""

    def __init__(self, rundir: RunDir, *, slot: Slot, base_id: int, log: EventLog) -> None:
        self.rundir = rundir
        self.slot = slot
        self.base_id = base_id
        self.log = log

    def snapshot(self) -> SharedState:
        """The state as it is now, without the lock (the file is replaced whole); initial if unreadable."""
        try:
            return self.rundir.read_or_initial(self.base_id)
        except (OSError, StateFormatError):
            return initial_state(self.base_id)

    def read(self) -> SharedState:
        """The state under the lock; an unreadable file is replaced by a fresh one (and said so).

        Raises NewerSchemaError for a file of a newer major schema: that one is never replaced.
        """
        try:
            return self.rundir.read_or_initial(self.base_id)
        except NewerSchemaError:
            raise
        except StateFormatError as error:
            self.log.error("state-unreadable", error=str(error))
            return initial_state(self.base_id)

    def record(self, state: SharedState, event: str, *, epoch: int | None, detail: str | None = None) -> None:
        """Append an event and write the state (lock held by the caller); a failed write is logged only."""
        state = with_event(state, now=time.time(), slot=self.slot, event=event, epoch=epoch, detail=detail)
        try:
            self.rundir.write_state(state)
        except OSError as error:
            self.log.error("state-write-failed", failed_event=event, error=str(error))

    def update(
        self,
        edit: Callable[[SharedState], SharedState | None],
        *,
        event: str,
        epoch: int | None,
        detail: str | None = None,
    ) -> bool:
        """Read, edit and write the state under the lock; False (logged) when the run dir failed us.

        `edit` returning None means nothing to record.
        """
        try:
            with self.rundir.locked(timeout=LOCK_TIMEOUT):
                state = edit(self.read())
                if state is not None:
                    self.record(state, event, epoch=epoch, detail=detail)
                return True
        except (LockTimeoutError, OSError, StateFormatError) as error:
            self.log.error("state-write-failed", failed_event=event, error=str(error))
            return False
