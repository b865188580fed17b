"""Lease decisions (pure) and the work queue's dedupe / requeue-after rules (a fake clock, no sleeps)."""

import threading
from datetime import UTC, datetime

from controller.leader import LeaseDecision, LeaseView, decide_lease, lease_body, lease_view
from controller.workqueue import WorkQueue

NOW = datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)


def lease(holder: str | None, duration: int = 15) -> LeaseView:
    return LeaseView(
        holder=holder,
        duration_seconds=duration,
        renew_time="2026-11-26T11:59:59.000000Z",
        acquire_time="2026-11-26T11:00:00.000000Z",
        transitions=4,
        resource_version="77",
    )


def test_lease_decisions() -> None:
    assert decide_lease(None, identity="me", unchanged_for=0) is LeaseDecision.CREATE
    assert decide_lease(lease("me"), identity="me", unchanged_for=100) is LeaseDecision.RENEW
    assert decide_lease(lease(None), identity="me", unchanged_for=0) is LeaseDecision.ACQUIRE
    assert decide_lease(lease("other"), identity="me", unchanged_for=14.9) is LeaseDecision.WAIT
    assert decide_lease(lease("other"), identity="me", unchanged_for=15) is LeaseDecision.ACQUIRE


def test_lease_body_keeps_acquire_time_on_renew_and_counts_transitions_on_takeover() -> None:
    renew = lease_body(
        name="l", namespace="ns", identity="me", duration_seconds=15, now=NOW, previous=lease("me"),
        decision=LeaseDecision.RENEW,
    )  # fmt: skip
    assert renew["metadata"]["resourceVersion"] == "77"
    assert renew["spec"]["acquireTime"] == "2026-11-26T11:00:00.000000Z"
    assert renew["spec"]["renewTime"] == "2026-11-26T12:00:00.123456Z"
    assert renew["spec"]["leaseTransitions"] == 4
    take = lease_body(
        name="l", namespace="ns", identity="me", duration_seconds=15, now=NOW, previous=lease("other"),
        decision=LeaseDecision.ACQUIRE,
    )  # fmt: skip
    assert (
        take["spec"]["acquireTime"] == "2026-11-26T12:00:00.123456Z" and take["spec"]["leaseTransitions"] == 5
    )
    create = lease_body(
        name="l", namespace="ns", identity="me", duration_seconds=15, now=NOW, previous=None,
        decision=LeaseDecision.CREATE,
    )  # fmt: skip
    assert "resourceVersion" not in create["metadata"] and create["spec"]["holderIdentity"] == "me"


def test_lease_view_of_released_lease() -> None:
    view = lease_view(
        {"metadata": {"resourceVersion": "5"}, "spec": {"holderIdentity": "", "leaseDurationSeconds": 1}}
    )
    assert view.holder is None and view.duration_seconds == 1 and view.resource_version == "5"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_queue_dedupes_and_never_hands_out_a_key_twice_at_once() -> None:
    queue = WorkQueue(clock=FakeClock())
    queue.add("ns/a")
    queue.add("ns/a")
    queue.add("ns/b")
    assert queue.depth() == 2
    first = queue.get()
    assert first == "ns/a"
    queue.add("ns/a")  # changed while being processed: handed out again only after done()
    assert queue.get() == "ns/b"
    queue.done("ns/b")
    assert queue.depth() == 0
    queue.done("ns/a")
    assert queue.get() == "ns/a"


def test_queue_requeue_after_waits_for_the_clock() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("ns/a", 5)
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    worker.join(timeout=0.2)
    assert worker.is_alive() and got == [], "not due yet"
    clock.now += 5
    queue.add("ns/other")  # wakes the waiting worker; ns/a is due by now too, queued behind it
    worker.join(timeout=5)
    assert got == ["ns/other"]
    assert queue.depth() == 1 and queue.get() == "ns/a"


def test_queue_shutdown_releases_workers() -> None:
    queue = WorkQueue()
    got: list[str | None] = ["sentinel"]
    worker = threading.Thread(target=lambda: got.__setitem__(0, queue.get()))
    worker.start()
    queue.shut_down()
    worker.join(timeout=5)
    assert not worker.is_alive() and got == [None]
