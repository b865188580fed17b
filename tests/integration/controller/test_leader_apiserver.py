"""Leader election on a real coordination.k8s.io Lease: one leader, hand-over, takeover on expiry."""

import threading
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from controller.kube import Kube
from controller.leader import LeaderElector, lease_view
from controller.metrics import ControllerMetrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class ManualClock:
    """Monotonic time the test advances, so expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elector(kube: Kube, namespace: str, identity: str, clock: ManualClock) -> LeaderElector:
    return LeaderElector(
        kube,
        name="hotupgrade-controller",
        namespace=namespace,
        identity=identity,
        metrics=ControllerMetrics(CollectorRegistry()),
        lease_duration=15,
        renew_deadline=10,
        retry_period=0.05,
        monotonic=clock,
        clock=lambda: datetime.now(UTC),
    )


def test_one_leader_release_and_handover(kube: Kube, namespace: str) -> None:
    clock = ManualClock()
    first, second = elector(kube, namespace, "one", clock), elector(kube, namespace, "two", clock)
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew(), "a live lease is not stolen"
    assert first.try_acquire_or_renew(), "renewing our own lease"
    lease = kube.get_lease(namespace, "hotupgrade-controller")
    assert lease is not None and lease_view(lease).holder == "one"
    first.release()
    assert second.try_acquire_or_renew(), "a released lease is taken at once"
    view = lease_view(kube.get_lease(namespace, "hotupgrade-controller") or {})
    assert view.holder == "two" and view.transitions == 1
    assert not first.try_acquire_or_renew()


def test_expired_lease_is_taken_over_and_the_old_leader_notices(kube: Kube, namespace: str) -> None:
    clock = ManualClock()
    first, second = elector(kube, namespace, "one", clock), elector(kube, namespace, "two", clock)
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    clock.now += 14
    assert not second.try_acquire_or_renew(), "not expired yet (judged by what `two` observed)"
    clock.now += 2  # `one` stopped renewing 16 s ago
    assert second.try_acquire_or_renew()
    stop = threading.Event()
    assert first.hold(stop) is False, "the old leader must learn it lost the lease"


def test_simultaneous_candidates_get_exactly_one_leader(kube: Kube, namespace: str) -> None:
    clock = ManualClock()
    electors = [elector(kube, namespace, f"c{i}", clock) for i in range(6)]
    results: list[bool] = [False] * len(electors)
    barrier = threading.Barrier(len(electors))

    def attempt(index: int) -> None:
        barrier.wait()
        results[index] = electors[index].try_acquire_or_renew()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(electors))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(results) == 1, results
    holder = lease_view(kube.get_lease(namespace, "hotupgrade-controller") or {}).holder
    assert holder == f"c{results.index(True)}"
