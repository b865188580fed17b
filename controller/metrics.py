"""Prometheus metrics of the controller, on a registry the caller owns (tests get their own)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ControllerMetrics:
    """Counters and gauges the reconciler, work queue, watcher and leader elector update."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter(
            "hotupgrade_controller_reconciles_total",
            "Reconciles by outcome (noop, wait, write, error).",
            ["result"],
            registry=registry,
        )
        self.actions = Counter(
            "hotupgrade_controller_actions_total", "Actions taken, by kind.", ["action"], registry=registry
        )
        self.api_retries = Counter(
            "hotupgrade_controller_api_retries_total",
            "Reconcile attempts retried after a conflict or a transient API error.",
            ["kind"],
            registry=registry,
        )
        self.upgrades = Counter(
            "hotupgrade_controller_upgrades_total",
            "Finished upgrades by result and reason.",
            ["result", "reason"],
            registry=registry,
        )
        self.upgrade_seconds = Histogram(
            "hotupgrade_controller_upgrade_duration_seconds",
            "Wall time of completed upgrades, from the checks passing to Completed.",
            buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1200),
            registry=registry,
        )
        self.queue_depth = Gauge(
            "hotupgrade_controller_queue_depth", "Keys waiting in the work queue.", registry=registry
        )
        self.watch_events = Counter(
            "hotupgrade_controller_watch_events_total",
            "Pod watch events by type.",
            ["type"],
            registry=registry,
        )
        # Per namespace and container name, never per pod: bounded series, and enough to subtract from
        # kube-state-metrics' restarts summed the same way (docs/upgrades.md).
        self.planned_restarts = Counter(
            "hotupgrade_controller_planned_container_restarts_total",
            "Container restarts the controller caused by changing a sidecar image (each image change is "
            "one), by namespace and container.",
            ["namespace", "container"],
            registry=registry,
        )
        self.leader = Gauge(
            "hotupgrade_controller_leader", "1 while this replica holds the lease.", registry=registry
        )
