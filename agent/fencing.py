"""The fence desk: `POST /fence` and `DELETE /fence?slot=X` on the status port (docs/contract.md
"The take-over fence"); the rules are agent/fence.py's, this is the shell that takes the lock and writes.

It waits for the run-dir lock only briefly (`LOCK_WAIT`, under the controller's 2 s HTTP timeout): a
take-over holds the lock until its Envoy is LIVE or dead, so a busy lock answers 503 and the controller
asks again on its next look, when the state file shows what became of the take-over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import hotrestart
from agent.contract import Slot
from agent.fence import Fence, FenceFormatError, parse_request, refusal
from agent.logs import EventLog
from agent.records import StateRecorder
from agent.rundir import LockTimeoutError, RunDir
from agent.state import NewerSchemaError, StateFormatError
from agent.status import AgentView

LOCK_WAIT = 1.0

Answer = tuple[int, bytes]


def _answer(code: int, **fields: object) -> Answer:
    return code, json.dumps(fields).encode()


@dataclass(frozen=True, kw_only=True)
class FenceDesk:
    """Records or refuses fences of the other slot's take-over, and lifts them."""

    slot: Slot
    rundir: RunDir
    records: StateRecorder
    view: Callable[[], AgentView]
    log: EventLog

    def fence(self, body: bytes) -> Answer:
        """200 with the fence (recorded now or before), 409 refused with the reason, 400, or 503."""
        try:
            slot, token = parse_request(json.loads(body or b"null"))
        except (ValueError, FenceFormatError) as error:
            return _answer(400, error=str(error))
        try:
            with self.rundir.locked(timeout=LOCK_WAIT):
                return self._fence_locked(slot, token)
        except LockTimeoutError:
            return _answer(503, error="the run-dir lock is held (a start may be under way); ask again")
        except (OSError, StateFormatError, NewerSchemaError) as error:
            self.log.error("fence-failed", slot=slot, token=token, error=str(error))
            return _answer(503, error=str(error))

    def _fence_locked(self, slot: Slot, token: str) -> Answer:
        state = self.records.read()
        view = self.view()
        serving = view.envoy_running and view.phase == "serving"
        bound = hotrestart.read_bound_parent_ids(state.base_id)
        why = refusal(state, own_slot=self.slot, serving=serving, slot=slot, bound_socket_ids=bound)
        if why is not None:
            self.log.warning("fence-refused", slot=slot, token=token, reason=why)
            return _answer(409, refused=why)
        existing = self.rundir.read_fence()
        if existing is not None and existing.slot == slot and existing.token == token:
            return _answer(200, fence=existing.to_json())
        fence = Fence(slot=slot, token=token, parent_epoch=state.epoch, fenced_at=time.time())
        self.rundir.write_fence(fence)
        detail = f"slot {slot} may not take over (controller attempt {token})"
        self.records.record(state, "fenced", epoch=state.epoch, detail=detail)
        self.log.warning("fenced", slot=slot, token=token, parent_epoch=state.epoch)
        return _answer(200, fence=fence.to_json())

    def lift(self, slot_name: str) -> Answer:
        """200 with whether a fence of `slot_name` was lifted; 400 or 503."""
        try:
            slot = parse_request({"slot": slot_name, "token": "lift"})[0]
        except FenceFormatError as error:
            return _answer(400, error=str(error))
        try:
            with self.rundir.locked(timeout=LOCK_WAIT):
                existing = self.rundir.read_fence()
                if existing is None or existing.slot != slot:
                    return _answer(200, lifted=False)
                self.rundir.remove_fence()
                state = self.records.read()
                self.records.record(state, "fence-lifted", epoch=state.epoch, detail=f"slot {slot}")
        except LockTimeoutError:
            return _answer(503, error="the run-dir lock is held; ask again")
        except (OSError, StateFormatError, NewerSchemaError) as error:
            self.log.error("fence-lift-failed", slot=slot, error=str(error))
            return _answer(503, error=str(error))
        self.log.event("fence-lifted", slot=slot, token=existing.token)
        return _answer(200, lifted=True)
