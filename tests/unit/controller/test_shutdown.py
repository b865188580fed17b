"""A stopping leader: how long it may wait for its workers on its last renewal, and the wait itself."""

import threading

import pytest

from controller.leader import shutdown_budget
from controller.main import join_threads


def budget(since_renew: float, *, duration: float = 15, deadline: float = 10, retry: float = 2) -> float:
    return shutdown_budget(
        lease_duration=duration, renew_deadline=deadline, retry_period=retry, since_renew=since_renew
    )


def test_budget_runs_to_the_renew_deadline_after_the_last_renewal() -> None:
    assert budget(0) == 10
    assert budget(2) == 8, "renewed one retry period ago (the usual case)"
    assert budget(9.5) == pytest.approx(0.5), "renewals were failing: little is left"


def test_budget_is_never_negative() -> None:
    assert budget(10) == 0
    assert budget(30) == 0, "the lease may be someone else's already"


def test_budget_keeps_a_retry_period_short_of_expiry_when_the_deadline_reaches_it() -> None:
    assert budget(1, duration=15, deadline=15, retry=2) == 12
    assert budget(1, duration=3, deadline=2, retry=0.3) == 1


def test_join_names_the_threads_still_running_at_the_timeout() -> None:
    release = threading.Event()
    done = threading.Thread(target=lambda: None, name="worker-0")
    busy = threading.Thread(target=release.wait, name="worker-1", daemon=True)
    done.start()
    busy.start()
    try:
        assert join_threads([done, busy], timeout=0.2) == ["worker-1"]
    finally:
        release.set()
    assert join_threads([done, busy], timeout=5) == []
