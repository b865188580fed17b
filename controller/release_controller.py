"""The SidecarRelease loop: the fleet caches feed a work queue of release names, one worker reconciles.

One worker is enough and keeps plans simple: a release's plan reads every release (overlaps), pods are
upgraded by the per-pod workers, and a release reconcile only writes targets and status. The worker
starts once every cache has listed, so no plan is made on a half-filled cache. Runs only while this
replica leads (main starts it with the pod workers, after the lease is acquired).
"""

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from controller.budgetcache import BudgetCache
from controller.fleetcache import FleetCache
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.release_reconciler import ReleaseReconciler
from controller.workqueue import WorkQueue


class ReleaseController:
    """Caches, queue and worker of the release loop; `start` and `shut_down` as main's Controller."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespaces: Sequence[str],
        metrics: ControllerMetrics,
        stop: threading.Event,
        watch_timeout: int = 300,
        budgets: BudgetCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.queue = WorkQueue()
        self.stop = stop
        self.fleet = FleetCache(
            kube, enqueue=self.queue.add, stop=stop, namespaces=namespaces, watch_timeout=watch_timeout
        )
        self.reconciler = ReleaseReconciler(kube, self.fleet, metrics=metrics, budgets=budgets, clock=clock)

    def start(self) -> threading.Thread:
        """Start the caches and the worker; the worker's thread, for the caller to join at shutdown."""
        self.fleet.start()
        worker = threading.Thread(target=self._work, name="release-worker", daemon=True)
        worker.start()
        return worker

    def _work(self) -> None:
        while not self.fleet.wait_synced(timeout=1.0):
            if self.stop.is_set():
                return
        while True:
            name = self.queue.get()
            if name is None:
                return
            try:
                result = self.reconciler.reconcile(name)  # errors end in a Result there
            finally:
                self.queue.done(name)
            if result.requeue_after is not None:
                self.queue.add_after(name, result.requeue_after)

    def shut_down(self) -> None:
        self.stop.set()
        self.queue.shut_down()
