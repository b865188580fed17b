"""What can go wrong talking to the API server, and the one map from an error to a retry. Pure.

`controller.kube` sorts every failed call into one of these kinds; `retry_for` decides, for every
reconcile, which kinds are temporary (re-read, decide and act again at once, with backoff) and how
long a key waits after a permanent error or a bug (kopf's TemporaryError/PermanentError). The tenacity
loop that acts on the verdict lives in the reconciler's shell; the CLI's shell retries its two
idempotent calls on TransientError alone.
"""

import json
from dataclasses import dataclass
from enum import StrEnum

# A permanent API error, or temporary ones that outlasted the in-place retries: look again later.
ERROR_REQUEUE = 10.0
# An exception that is not an API error is a bug: the worker lives on and the key is tried again later.
CRASH_REQUEUE = 30.0


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 for a connection failure)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ConflictError(KubeError):
    """The pod changed since we read it (409), or a `test` op failed (422): re-read and decide again."""


class TransientError(KubeError):
    """Worth retrying as is: 429, 5xx, connection errors."""


class NotFoundError(KubeError):
    """404."""


def already_exists(exc: KubeError) -> bool:
    """A 409 for a create whose name is taken (not a write that lost a race)."""
    return isinstance(exc, ConflictError) and "AlreadyExists" in exc.message


def refused(exc: KubeError) -> bool:
    """The API server will not take this object as it is (400, 403 Forbidden by admission, quota or RBAC,
    422 Invalid): asking again changes nothing."""
    return exc.status in (400, 403, 422) and not isinstance(exc, ConflictError)


def api_message(exc: KubeError) -> str:
    """The API server's own words from a failed call (the Status object's reason and message)."""
    try:
        status = json.loads(exc.message)
    except ValueError:
        return exc.message[:500]
    if not isinstance(status, dict) or not status.get("message"):
        return exc.message[:500]
    reason = status.get("reason")
    return f"{reason}: {status['message']}" if reason else str(status["message"])


class ErrorKind(StrEnum):
    """How a reconcile failed; also the `kind` label of the retry metric."""

    CONFLICT = "conflict"
    TRANSIENT = "transient"
    API = "api"  # any other API error: permanent for this attempt
    CRASH = "crash"  # not an API error at all


@dataclass(frozen=True)
class Retry:
    """What to do after an error: retry in place (temporary errors), and when to look again otherwise."""

    kind: ErrorKind
    in_place: bool
    requeue_after: float


def retry_for(exc: BaseException) -> Retry:
    """The one error map: conflicts and transient errors are retried in place, then requeued."""
    if isinstance(exc, ConflictError):
        return Retry(ErrorKind.CONFLICT, in_place=True, requeue_after=ERROR_REQUEUE)
    if isinstance(exc, TransientError):
        return Retry(ErrorKind.TRANSIENT, in_place=True, requeue_after=ERROR_REQUEUE)
    if isinstance(exc, KubeError):
        return Retry(ErrorKind.API, in_place=False, requeue_after=ERROR_REQUEUE)
    return Retry(ErrorKind.CRASH, in_place=False, requeue_after=CRASH_REQUEUE)
