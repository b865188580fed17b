"""Prometheus metrics of the webhook, on a registry chosen by the caller.

With several gunicorn workers, prometheus-client's multiprocess mode is used: PROMETHEUS_MULTIPROC_DIR
must be set before prometheus_client is imported (webhook.server does it), and /metrics aggregates
every worker's files.
"""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The webhook's counters and histogram."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.admissions = Counter(
            "hotupgrade_webhook_admissions",
            "Admission requests by endpoint and result (patched, allowed, denied, bad_request; an internal "
            "error: error when failurePolicy Fail denied it, error_ignored when Ignore admitted it).",
            ["endpoint", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "hotupgrade_webhook_admission_duration_seconds",
            "Time to answer an admission request, body parsing included.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.injections = Counter(
            "hotupgrade_webhook_injections",
            "Injection decisions on Pod CREATE (inject, or the reason to skip).",
            ["decision"],
            registry=registry,
        )
        self.denials = Counter(
            "hotupgrade_webhook_denials", "Pod updates denied by the guard.", ["reason"], registry=registry
        )
        self.image_choices = Counter(
            "hotupgrade_webhook_image_choices",
            "Injected pods by where their sidecar image came from: release (a SidecarRelease selects the "
            "pod) or default (the config's sidecarImage).",
            ["source"],
            registry=registry,
        )
        self._collectors: list[Collector] = []
        self.config_reloads = Counter(
            "hotupgrade_webhook_config_reloads",
            "Config file reloads by result.",
            ["result"],
            registry=registry,
        )

    def add_collector(self, collector: Collector) -> None:
        """A scrape-time collector whose values every worker computes alike (no per-process state)."""
        self._collectors.append(collector)
        self.registry.register(collector)

    def exposition(self) -> bytes:
        """The text exposition; in multiprocess mode, aggregated over every worker."""
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            for collector in self._collectors:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)
