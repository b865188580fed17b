"""Stats continuity across upgrades as a Prometheus scraper of the pod sees it (issue 12, scenario 6).

The scraper polls both slots' `/stats/prometheus` (the agent's view of its Envoy, counters carried
across hot restarts) like two targets of one job, and Envoy's own admin endpoint for comparison. Across
two upgrades under load, the request and connection counters must never decrease (no reset) and must
not exceed what the clients sent (no double count); Envoy's raw endpoint shows both faults.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable

import pytest

from agent import contract
from podharness.load import LoadConfig, LoadGenerator
from podharness.metrics import sample
from podharness.pod import Pod
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REQUESTS = ("envoy_http_downstream_rq_total", {"envoy_http_conn_manager_prefix": "http"})
CONNECTIONS = (
    "envoy_listener_downstream_cx_total",
    {"envoy_listener_address": f"0.0.0.0_{contract.LISTEN_PORT}"},
)
UPSTREAM = ("envoy_cluster_upstream_rq_total", {"envoy_cluster_name": "app"})
SERIES = {"requests": REQUESTS, "connections": CONNECTIONS, "upstream": UPSTREAM}


class Scraper:
    """Scrapes a set of targets every `interval` seconds from a thread; keeps (time, target, text)."""

    def __init__(self, targets: dict[str, Callable[[], str]], interval: float = 0.25) -> None:
        self.targets = targets
        self.interval = interval
        self.scrapes: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, fetch in self.targets.items():
                # A target that is down is what Prometheus records as up == 0.
                with contextlib.suppress(OSError, RuntimeError):
                    self.scrapes.append((time.time(), name, fetch()))
            self._stop.wait(self.interval)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def series(self, targets: set[str], name: str, labels: dict[str, str]) -> list[float]:
        """The values of one series over time from these targets (targets without it are skipped)."""
        values = []
        for _at, target, text in self.scrapes:
            if target in targets and (value := sample(text, name, labels)) is not None:
                values.append(value)
        return values


def increase(values: list[float]) -> float:
    """Prometheus's increase() over these samples: a decrease counts as a reset to zero."""
    return sum(b - a if b >= a else b for a, b in itertools.pairwise(values))


def decreases(values: list[float]) -> list[tuple[float, float]]:
    return [(a, b) for a, b in itertools.pairwise(values) if b < a]


def test_counters_neither_reset_nor_double_count_across_upgrades(pod: Pod) -> None:
    # Longer than Envoy's 5 s stats flush: the new Envoy merges the old one's drain-time counts before
    # Terminate (it never fetches them at Terminate itself).
    sidecar_pod = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=8)
    sidecar_pod.start_pod()

    def agent(slot: str) -> Callable[[], str]:
        def fetch() -> str:
            status, body = sidecar_pod.pod.http_get(sidecar_pod.status_port(slot), "/stats/prometheus")
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            return body.decode()

        return fetch

    def raw() -> str:
        return sidecar_pod.pod.http_get(contract.ADMIN_PORT, "/stats/prometheus", timeout=2)[1].decode()

    load = LoadGenerator(
        LoadConfig(host=sidecar_pod.pod.ip, http_port=contract.LISTEN_PORT, tcp_port=contract.TCP_LISTEN_PORT)
    ).start()
    with Scraper({"a": agent("a"), "b": agent("b"), "envoy": raw}) as scraper:
        time.sleep(6)  # past Envoy's first periodic stats flush (5 s), which latches the counters
        for epoch, slot in enumerate(("b", "a"), start=1):
            sidecar_pod.upgrade(slot)
            assert_serving(sidecar_pod, slot, epoch)
            time.sleep(6)
        summary = load.stop()
        time.sleep(1)
    sent = summary["requests"]
    final = {name: scraper.series({"a"}, *series)[-1] for name, series in SERIES.items()}
    print(f"HTTP requests sent {sent}; exported at the end {final}")
    empty = [text for _at, target, text in scraper.scrapes if target == "b" and not text]
    assert empty, "the slot that does not serve exports nothing, so no series is counted twice"

    for name, series in SERIES.items():
        exported = scraper.series({"a", "b"}, *series)
        assert len(exported) > 20, name
        assert decreases(exported) == [], f"{name} reset as the scraper sees it"
    raw_requests = scraper.series({"envoy"}, *REQUESTS)
    exported = scraper.series({"a", "b"}, *REQUESTS)
    print(
        f"Envoy's own endpoint: request counter decreases {decreases(raw_requests)}; "
        f"increase() {increase(raw_requests):.0f} vs the agent's {increase(exported):.0f}"
    )
    assert len(decreases(raw_requests)) == 2, "Envoy's own counters restart at each hot restart"

    assert final["requests"] <= sent, "no request counted twice"
    assert final["upstream"] <= sent
    lost = sent - final["requests"]
    print(f"uncounted: {lost} of {sent} ({100 * lost / sent:.2f}%) over 2 upgrades")
    assert lost <= 0.02 * sent, "only the old Envoy's traffic while the new one starts goes uncounted"
