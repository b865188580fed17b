"""Hot upgrade under load through the real cluster and the in-cluster controller: no failed request, epochs
advance, the app never restarts; a target that cannot start is rolled back while the old Envoy keeps
serving."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from kubernetes import client

from clusterkit import kube, upgrade
from clusterkit.suite import start_load_to
from controller.record import Phase
from e2e import conftest
from podharness.load import LoadGenerator
from podharness.loadstats import disallowed_failures, summarize

pytestmark = pytest.mark.timeout(1500)


def assert_tcp_only_cut_at_parent_exit(
    load: LoadGenerator, upgrades: int, timeline: Sequence[tuple[float, str]] = ()
) -> None:
    """The only failures of the (stopped) load are TCP echoes cut by the old Envoys' FINs, at most one per
    connection and upgrade; podharness.loadstats.disallowed_failures owns the rule, as for `make demo`.
    `timeline`: (time.time(), what) of the upgrades behind the load, shown around an unclean close."""
    record = load.record
    why = disallowed_failures(
        summarize(record), tcp_connections=load.config.tcp_connections, upgrades=upgrades
    )
    tcp_failures = [f.error for f in record.failures if f.kind == "tcp"]
    unclean = [c for c in record.tcp_closes if not c.clean]
    near = [
        f"close at {c.at:.1f}: "
        + "; ".join(f"{at - c.at:+.1f}s {what}" for at, what in timeline if abs(at - c.at) < 60)
        for c in unclean
    ]
    assert not why, (why, tcp_failures, unclean, near)


def start_load(pod: kube.Pod) -> LoadGenerator:
    return start_load_to(pod["status"]["podIP"])


def app_container(pod: kube.Pod) -> dict[str, object]:
    return kube.container_status(pod, "app")


@dataclass(frozen=True)
class Window:
    """The pod's Ready condition as watched during one upgrade (clusterkit/upgrade.py ReadinessWatch)."""

    not_ready_s: float
    flips: int


def upgrade_once(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    image: str,
    budget: Mapping[Phase, float] | None = upgrade.NOT_READY_BUDGET_S,
) -> tuple[upgrade.Outcome, Window]:
    """One upgrade, its NotReady time held to `budget` (the README's by default) by the helper:
    (outcome, window)."""
    outcome = upgrade.upgrade(api, namespace, name, image, conftest.UPGRADE_TIMEOUT, budget=budget)
    return outcome, Window(outcome.not_ready_s, outcome.ready_flips)


def test_two_hot_upgrades_under_load(api: client.ApiClient, namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "hot")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    app_before = app_container(pod)
    first = upgrade.status_of(pod)
    epoch_before = (upgrade.agent_status(ip, first.slots[first.active]) or {}).get("epoch")
    load = start_load(pod)
    report = []
    try:
        for target in (conftest.SIDECAR_IMAGES[1], conftest.SIDECAR_IMAGES[0]):
            before = upgrade.status_of(kube.get_pod(api, namespace, name))
            outcome, not_ready = upgrade_once(api, namespace=namespace, name=name, image=target)
            assert outcome.phase == Phase.COMPLETED, outcome.message
            after = upgrade.status_of(outcome.pod)
            assert after.active == before.standby and after.standby == before.active
            assert after.sidecar_image == target
            assert kube.container_image(outcome.pod, after.active) == target
            assert kube.container_image(outcome.pod, after.standby) == conftest.EMPTY_IMAGE
            agent = upgrade.agent_status(ip, after.slots[after.active])
            assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
            report.append(
                {
                    "target": target,
                    "epoch": agent["epoch"],
                    "not_ready_s": not_ready.not_ready_s,
                    "ready_flips": not_ready.flips,
                    "requests_so_far": load.summary()["requests"],
                }
            )
    finally:
        summary = load.stop()
    print(
        json.dumps(
            {
                "upgrades": report,
                "load": {
                    k: summary[k]
                    for k in (
                        "requests",
                        "failed",
                        "tcp_echoes",
                        "tcp_failed",
                        "http1_connection_close",
                        "http2_goaway",
                        "p99_ms",
                    )
                },
            }
        )
    )
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 100
    assert summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=2)
    epochs = [r["epoch"] for r in report]
    assert epoch_before is not None and epochs == [epoch_before + 1, epoch_before + 2], (epoch_before, epochs)
    final = kube.get_pod(api, namespace, name)
    app_after = app_container(final)
    assert app_after["containerID"] == app_before["containerID"] and app_after["restartCount"] == 0


def test_failed_upgrade_rolls_back_and_keeps_serving(api: client.ApiClient, namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "broken")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    before = upgrade.status_of(pod)
    active_id = kube.container_status(pod, before.active)["containerID"]
    load = start_load(pod)
    try:
        outcome, not_ready = upgrade_once(api, namespace=namespace, name=name, image=conftest.BROKEN_IMAGE)
        # After the failure the old Envoy must still be the one serving.
        time.sleep(3)
    finally:
        summary = load.stop()
    print(
        json.dumps(
            {
                "phase": outcome.phase,
                "message": outcome.message,
                "not_ready_s": not_ready.not_ready_s,
                "requests": summary["requests"],
                "failed": summary["failed"],
                "tcp_echoes": summary["tcp_echoes"],
                "tcp_failed": summary["tcp_failed"],
            }
        )
    )
    assert outcome.phase == Phase.FAILED
    assert summary["failed"] == 0, summary["failures"]
    # The old Envoy never stopped: no TCP connection may have been cut at all.
    assert summary["tcp_failed"] == 0, summary["failures"]
    assert summary["tcp_unclean_closes"] == 0, summary["failures"]
    assert summary["requests"] > 50
    final = kube.get_pod(api, namespace, name)
    after = upgrade.status_of(final)
    assert after.active == before.active
    assert kube.container_image(final, before.active) == conftest.SIDECAR_IMAGES[0]
    assert kube.container_image(final, before.standby) == conftest.EMPTY_IMAGE
    assert kube.container_status(final, before.active)["containerID"] == active_id
    agent = upgrade.agent_status(ip, before.slots[before.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
