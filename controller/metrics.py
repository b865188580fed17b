"""Prometheus metrics of the controller, on a registry the caller owns (tests get their own)."""

import contextlib

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
        # Per SidecarRelease (a handful per cluster, so a label each is bounded); series of a deleted
        # release are removed (ReleaseMetrics.forget).
        self.release = ReleaseMetrics(registry)


class ReleaseMetrics:
    """Per-release pod counts (as the release's status shows them), batches, rollout durations."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def pods(what: str, help_text: str) -> Gauge:
            return Gauge(
                f"hotupgrade_controller_release_{what}_pods", help_text, ["release"], registry=registry
            )

        self.matched = pods("matched", "Injected pods the SidecarRelease governs.")
        self.updated = pods("updated", "Governed pods running the release's image with nothing in flight.")
        self.upgrading = pods("upgrading", "Governed pods queued or in flight toward the release's image.")
        self.failed = pods("failed", "Governed pods whose last upgrade to the release's image failed.")
        self.batches = Counter(
            "hotupgrade_controller_release_batches_total",
            "Batches of pod upgrades a SidecarRelease started.",
            ["release"],
            registry=registry,
        )
        self.started = Counter(
            "hotupgrade_controller_release_started_pods_total",
            "Pod upgrades a SidecarRelease started (set the pod's target image).",
            ["release"],
            registry=registry,
        )
        self.rollout_seconds = Histogram(
            "hotupgrade_controller_release_rollout_duration_seconds",
            "Wall time of finished rollouts, from the release's Complete condition turning False to True.",
            ["release"],
            buckets=(10, 30, 60, 120, 300, 600, 1200, 3600, 7200),
            registry=registry,
        )

    def forget(self, release: str) -> None:
        """Drop the series of a release that is gone."""
        families: tuple[Gauge | Counter | Histogram, ...] = (
            self.matched,
            self.updated,
            self.upgrading,
            self.failed,
            self.batches,
            self.started,
            self.rollout_seconds,
        )
        for family in families:
            _remove(family, release)


def _remove(family: Gauge | Counter | Histogram, release: str) -> None:
    with contextlib.suppress(KeyError):  # never set for this release
        family.remove(release)
