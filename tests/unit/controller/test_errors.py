"""The one map from an error to a retry, and the reconcile Result it ends in."""

import pytest

from controller.errors import (
    CRASH_REQUEUE,
    ERROR_REQUEUE,
    ConflictError,
    ErrorKind,
    KubeError,
    NotFoundError,
    Retry,
    TransientError,
    already_exists,
    retry_for,
)
from controller.result import DONE, Result, requeue


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConflictError(409, "Operation cannot be fulfilled"), Retry(ErrorKind.CONFLICT, True, ERROR_REQUEUE)),
        (
            ConflictError(422, "the server rejected our request"),
            Retry(ErrorKind.CONFLICT, True, ERROR_REQUEUE),
        ),
        (TransientError(503, "unavailable"), Retry(ErrorKind.TRANSIENT, True, ERROR_REQUEUE)),
        (TransientError(0, "ConnectionRefusedError"), Retry(ErrorKind.TRANSIENT, True, ERROR_REQUEUE)),
        (KubeError(403, "forbidden"), Retry(ErrorKind.API, False, ERROR_REQUEUE)),
        (NotFoundError(404, "pod gone mid-write"), Retry(ErrorKind.API, False, ERROR_REQUEUE)),
        (KeyError("a bug"), Retry(ErrorKind.CRASH, False, CRASH_REQUEUE)),
    ],
)
def test_temporary_errors_retry_in_place_and_everything_ends_in_a_requeue(
    error: Exception, expected: Retry
) -> None:
    assert retry_for(error) == expected


def test_already_exists_is_a_taken_name_not_a_lost_race() -> None:
    assert already_exists(ConflictError(409, '{"reason":"AlreadyExists"}'))
    assert not already_exists(ConflictError(409, '{"reason":"Conflict"}'))
    assert not already_exists(KubeError(400, "AlreadyExists"))


def test_result_is_done_or_requeue_after() -> None:
    assert Result() == DONE and DONE.done and DONE.requeue_after is None
    assert requeue(2.5) == Result(requeue_after=2.5) and not requeue(2.5).done
    assert not requeue(0).done, "at once is not done"
