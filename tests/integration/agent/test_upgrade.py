"""Hot upgrades a -> b -> a -> b of a real Envoy under continuous HTTP/1.1, HTTP/2 and TCP load.

Each upgrade is driven as kubelet and the controller would: the empty slot restarts with the sidecar
image, its postStart hook (`hotupgrade-agent wait`) must pass, the old slot must reach `retired` (its
Envoy exited), then the old container gets SIGTERM and restarts empty.
"""

from __future__ import annotations

import time

import pytest

from agent import contract
from podharness.load import LoadConfig, LoadGenerator
from podharness.metrics import sample
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import (
    TCP_CONNECTIONS,
    assert_serving,
    assert_tcp_closed_only_at_parent_shutdown,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def start_load(sidecars: SidecarPod) -> LoadGenerator:
    config = LoadConfig(
        host=sidecars.pod.ip,
        http_port=contract.LISTEN_PORT,
        tcp_port=contract.TCP_LISTEN_PORT,
        tcp_connections=TCP_CONNECTIONS,
    )
    return LoadGenerator(config).start()


def test_fresh_pod_serves_at_epoch_zero(sidecar_pod: SidecarPod) -> None:
    assert_serving(sidecar_pod, "a", 0)
    assert sidecar_pod.state()["slots"]["b"]["phase"] is None, "the empty slot never ran an agent"
    metrics = sidecar_pod.metrics("a")
    assert sample(metrics, "hotupgrade_agent_epoch") == 0
    assert sample(metrics, "hotupgrade_agent_takeovers_total") == 0


def test_three_upgrades_under_load_fail_nothing(sidecar_pod: SidecarPod) -> None:
    load = start_load(sidecar_pod)
    try:
        time.sleep(1)
        for epoch, slot in enumerate(("b", "a", "b"), start=1):
            sidecar_pod.upgrade(slot)
            assert_serving(sidecar_pod, slot, epoch)
            metrics = sidecar_pod.metrics(slot)
            assert sample(metrics, "hotupgrade_agent_takeovers_total") == 1
            assert sample(metrics, "hotupgrade_agent_epoch") == epoch
            assert sample(metrics, "hotupgrade_agent_phase", {"hotupgrade_agent_phase": "serving"}) == 1
            assert (sample(metrics, "hotupgrade_agent_drain_seconds") or 0) > 0
            time.sleep(0.5)
    finally:
        summary = load.stop()
        print(summary, sidecar_pod.timings)

    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 1000
    assert summary["http1_connection_close"] > 0, "HTTP/1.1 clients were told to move"
    assert summary["http2_goaway"] >= 3, "HTTP/2 clients got a GOAWAY at each upgrade"
    assert_tcp_closed_only_at_parent_shutdown(load.record, sidecar_pod.timings)
    history = [e["event"] for e in sidecar_pod.state().get("history", [])]
    assert history, "the state file records each step"
