"""`hotupgrade-controller ARGS` -> `main(argv)`: wire the shell together and run it.

Leader election gates everything that writes; on lease loss the process exits (status 3) so that a
supervisor restarts it as a follower, never a replica that half-believes it still leads. On SIGTERM or
SIGINT the leader stops taking work, waits for the reconciles in flight while its last renewal still
covers them (controller.leader.shutdown_budget), and releases the lease only if every worker stopped:
otherwise it exits holding it, and the followers wait for it to expire.
"""

import argparse
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType

from prometheus_client import CollectorRegistry, start_http_server

from controller.agents import AgentClient
from controller.budgetcache import BudgetCache
from controller.kube import Kube
from controller.leader import LeaderElector
from controller.metrics import ControllerMetrics
from controller.policy import ImageAllowlist, Policy
from controller.reconciler import Reconciler
from controller.release_controller import ReleaseController
from controller.watcher import PodWatcher
from controller.workqueue import WorkQueue
from webhook import logs
from webhook.kubeclient import load_api_client

EXIT_LEASE_LOST = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hotupgrade-controller", description="Run the upgrade controller.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster service account)")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: all); SidecarReleases only see pods in these "
        "namespaces",
    )
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="act only while holding the Lease --lease-namespace/--lease-name; off: for one replica only "
        "(default: on)",
    )
    p.add_argument(
        "--lease-name", default="hotupgrade-controller", help="the Lease's name (default: %(default)s)"
    )
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="the Lease's namespace (default: $POD_NAMESPACE, else default)",
    )
    p.add_argument(
        "--lease-duration",
        type=int,
        default=15,
        help="seconds a follower waits after the leader's last renewal before taking the Lease (default: 15)",
    )
    p.add_argument(
        "--renew-deadline",
        type=float,
        default=10.0,
        help="seconds the leader keeps trying to renew before it exits; also bounds how long it waits on "
        "SIGTERM for reconciles in flight, from its last renewal (default: 10)",
    )
    p.add_argument(
        "--retry-period",
        type=float,
        default=2.0,
        help="seconds between Lease attempts and renewals (default: 2)",
    )
    p.add_argument(
        "--identity",
        default=f"{socket.gethostname()}_{os.getpid()}",
        help="this replica's name in the Lease (default: HOSTNAME_PID)",
    )
    p.add_argument("--allow-image-prefix", action="append", default=[], help="allowed target image prefix")
    p.add_argument(
        "--allow-image-regex", action="append", default=[], help="allowed target image (full match)"
    )
    p.add_argument(
        "--step-timeout", type=float, default=300.0, help="seconds per step (drain excepted; default: 300)"
    )
    p.add_argument(
        "--drain-grace",
        type=float,
        default=120.0,
        help="seconds on top of parent-shutdown time (default: 120)",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=2.0,
        help="seconds between agent status checks, and between looks of a held upgrade (a budget, a "
        "release's swap hold): a lifted pod swaps at the latest this long after the lift (default: 2)",
    )
    p.add_argument(
        "--prepull",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pull the target on the pod's node before the swap (needs pods create/delete; default: on)",
    )
    p.add_argument(
        "--kubelet-grace",
        type=float,
        default=30.0,
        help="seconds without any kubelet reaction to an image change (a new container, an answering "
        "agent, or a kubelet Event about the container) before it counts as ignored (default: 30)",
    )
    p.add_argument(
        "--disruption-budgets",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start an upgrade only when the pod's PodDisruptionBudgets allow it (needs list/watch on "
        "policy/poddisruptionbudgets and pods; docs/rollout.md; default: on)",
    )
    p.add_argument("--workers", type=int, default=4, help="pods reconciled in parallel (default: 4)")
    p.add_argument(
        "--releases",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="converge the pods SidecarReleases select (needs the CRD and RBAC for sidecarreleases; "
        "default: on)",
    )
    p.add_argument(
        "--watch-timeout", type=int, default=300, help="seconds before a pod watch is renewed (default: 300)"
    )
    p.add_argument(
        "--metrics-port", type=int, default=9090, help="0 disables the metrics server (default: 9090)"
    )
    p.add_argument("--metrics-bind", default="0.0.0.0", help="metrics server address (default: 0.0.0.0)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    return p


def policy_from(args: argparse.Namespace) -> Policy:
    for pattern in args.allow_image_regex:
        re.compile(pattern)  # fail at startup, not at the first upgrade
    return Policy(
        allowlist=ImageAllowlist(
            prefixes=tuple(args.allow_image_prefix), patterns=tuple(args.allow_image_regex)
        ),
        step_timeout=args.step_timeout,
        drain_grace=args.drain_grace,
        poll_interval=args.poll_interval,
        pre_pull=args.prepull,
        kubelet_grace=args.kubelet_grace,
    )


def join_threads(threads: Iterable[threading.Thread], timeout: float) -> list[str]:
    """Wait up to `timeout` seconds in all for `threads` to end; the names of those still running."""
    deadline = time.monotonic() + timeout
    running = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            running.append(thread.name)
    return running


class Controller:
    """Watchers feed the queue; workers reconcile one key at a time each; the release loop beside them."""

    def __init__(
        self,
        reconciler: Reconciler,
        kube: Kube,
        *,
        namespaces: Sequence[str],
        workers: int,
        metrics: ControllerMetrics,
        watch_timeout: int = 300,
        releases: bool = False,
        budgets: BudgetCache | None = None,
    ) -> None:
        """`budgets`: the PodDisruptionBudget caches the reconciler's gate reads; started and stopped here."""
        self.reconciler = reconciler
        self.budgets = budgets
        self.queue = WorkQueue()
        self.stop = threading.Event()
        self.metrics = metrics
        self.workers = workers
        self.threads: list[threading.Thread] = []  # pod and release workers: they write, shut_down waits
        scopes: list[str | None] = list(namespaces) or [None]
        self.watchers = [
            PodWatcher(
                kube, self.queue, namespace=ns, metrics=metrics, stop=self.stop, watch_timeout=watch_timeout
            )
            for ns in scopes
        ]
        self.releases = (
            ReleaseController(
                kube,
                namespaces=namespaces,
                metrics=metrics,
                stop=self.stop,
                watch_timeout=watch_timeout,
                budgets=budgets,
            )
            if releases
            else None
        )

    def start(self) -> None:
        if self.budgets is not None:
            self.budgets.start()
        for watcher in self.watchers:
            threading.Thread(
                target=watcher.run, name=f"watch-{watcher.namespace or 'all'}", daemon=True
            ).start()
        for index in range(self.workers):
            worker = threading.Thread(target=self._work, name=f"worker-{index}", daemon=True)
            worker.start()
            self.threads.append(worker)
        if self.releases is not None:
            self.threads.append(self.releases.start())

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            namespace, _, name = key.partition("/")
            try:
                result = self.reconciler.reconcile(namespace, name)  # errors end in a Result there
            finally:
                self.queue.done(key)
            if result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)
            self.metrics.queue_depth.set(self.queue.depth())

    def shut_down(self, timeout: float = 0.0) -> list[str]:
        """Stop taking work, wait up to `timeout` seconds for the reconciles in flight to end; the names
        of the workers still busy (none: nothing of this controller acts any more)."""
        self.stop.set()
        self.queue.shut_down()
        if self.releases is not None:
            self.releases.shut_down()
        busy = join_threads(self.threads, timeout)
        if self.budgets is not None:
            self.budgets.close()  # after the workers: a reconcile in flight still gates on fresh caches
        return busy


def main(argv: list[str] | None = None) -> int:
    """Run the controller until SIGTERM/SIGINT (0) or lease loss (EXIT_LEASE_LOST); argv None: sys.argv."""
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    policy = policy_from(args)
    registry = CollectorRegistry()
    metrics = ControllerMetrics(registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_bind, registry=registry)
    kube = Kube(load_api_client(args.kubeconfig))
    budgets = (
        BudgetCache(kube, namespaces=args.namespace, watch_timeout=args.watch_timeout)
        if args.disruption_budgets
        else None
    )
    reconciler = Reconciler(kube, AgentClient(), policy, metrics=metrics, budgets=budgets)
    controller = Controller(
        reconciler,
        kube,
        namespaces=args.namespace,
        workers=args.workers,
        metrics=metrics,
        watch_timeout=args.watch_timeout,
        releases=args.releases,
        budgets=budgets,
    )
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logs.event("controller_stopping", signal=signum)
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logs.event(
        "controller_starting",
        identity=args.identity,
        namespaces=args.namespace or "all",
        leader_elect=args.leader_elect,
        allowlist="everything" if policy.allowlist.allows_everything else "configured",
        step_timeout=policy.step_timeout,
        prepull=policy.pre_pull,
        releases=args.releases,
        disruption_budgets=args.disruption_budgets,
    )
    elector = None
    if args.leader_elect:
        elector = LeaderElector(
            kube,
            name=args.lease_name,
            namespace=args.lease_namespace,
            identity=args.identity,
            metrics=metrics,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        if not elector.acquire(stopping):
            return 0
    controller.start()
    if elector is not None:
        if not elector.hold(stopping):
            logs.event("controller_exiting", reason="lease lost")
            os._exit(EXIT_LEASE_LOST)  # workers may be mid-request: do not let them finish as a non-leader
        # The workers may act only while the last renewal covers them (controller.leader.shutdown_budget).
        # One still busy after that keeps the lease held: the process exits now and the followers wait
        # out the lease's duration, instead of taking a released lease while that worker still writes.
        budget = elector.shutdown_budget()
        busy = controller.shut_down(timeout=budget)
        if busy:
            logs.event(
                "lease_not_released",
                level=logging.WARNING,
                lease=f"{elector.namespace}/{elector.name}",
                identity=args.identity,
                busy=",".join(busy),
                waited=round(budget, 3),
            )
        else:
            elector.release()
    else:
        stopping.wait()
        controller.shut_down()
    logs.event("controller_stopped")
    return 0
