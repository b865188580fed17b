"""nativeSidecar mode on the real kubelet (issue 12, scenario 1): the pair as restartable init containers
(`restartPolicy: Always`), upgraded in place by the in-cluster controller under load. The kubelet (1.34)
restarts a restartable init container whose image changed (kubernetes#126525, 1.32+), which nobody else
tests: not Kruise, which refuses in-place updates of init containers.

Proved here, each under HTTP/1.1 + HTTP/2 + raw TCP load with 0 failed requests and the app container
never restarted: a hot upgrade and back, a failed upgrade rolled back while the old Envoy keeps serving,
and a fleet rollout with `hotupgrade rollout --direct`; the pod's NotReady time is held to the README's
budget by clusterkit/upgrade.py. And the startup ordering the mode exists for: the app's process starts only
after slot a's Envoy is LIVE (the pair's postStart hook blocks the next init container, and the app waits for
every init container), measured from the agent's own record and the app's process start time.

The module installs a release of its own with `injection.mode: nativeSidecar` (the session release
injects regular containers); like e2e/test_chart.py, it sees only its own namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from controller.record import Phase
from e2e import conftest
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load
from podharness.load import LoadGenerator
from webhook import contract

pytestmark = pytest.mark.timeout(1800)

RELEASE = release.Release(
    os.environ.get("E2E_NATIVE_RELEASE", "hu-native"),
    os.environ.get("E2E_NATIVE_NAMESPACE", "hotupgrade-native-e2e"),
)
APP_NAMESPACE = f"hu-native-app-{uuid.uuid4().hex[:6]}"
PAIR = ("hotupgrade-a", "hotupgrade-b")  # the chart's containerNames, slot a first
FLEET_REPLICAS = 3
MAX_UNAVAILABLE = 2
# /proc/PID/stat start times are in clock ticks: the app's start is known to one tick.
CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def native_release(api: client.ApiClient, workdir: Path) -> Iterator[release.Release]:
    """The chart installed with the pair as native sidecars; its controller watches APP_NAMESPACE only."""
    injection = {"mode": "nativeSidecar"}
    with conftest.module_release(
        api, workdir, RELEASE, app_namespace=APP_NAMESPACE, injection=injection
    ) as of:
        yield of


@pytest.fixture(scope="module")
def native_namespace(api: client.ApiClient, native_release: release.Release) -> Iterator[str]:
    labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
    with conftest.scoped_namespace(api, native_release, labels, name=APP_NAMESPACE) as name:
        yield name


# ---- the pair as init containers ---------------------------------------------------------------------


def init_container(pod: kube.Pod, name: str) -> dict[str, Any]:
    [found] = [c for c in pod["spec"].get("initContainers") or [] if c["name"] == name]
    return dict(found)


def init_status(pod: kube.Pod, name: str) -> dict[str, Any]:
    [found] = [s for s in pod["status"].get("initContainerStatuses") or [] if s["name"] == name]
    return dict(found)


def assert_native_pair(pod: kube.Pod) -> None:
    """The pair leads the init containers as restartable ones; the regular containers are the app's."""
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]][:2] == list(PAIR), spec["initContainers"]
    assert all(init_container(pod, name).get("restartPolicy") == "Always" for name in PAIR)
    assert [c["name"] for c in spec["containers"]] == ["app"]


def timestamp(value: str) -> float:
    """An RFC 3339 time of the API (whole seconds) as Unix time."""
    return datetime.fromisoformat(value).timestamp()


def process_started_at(pid: int) -> float:
    """Unix time a process started, to one clock tick: /proc/PID/stat field 22 counts ticks since boot
    (CLOCK_BOOTTIME, proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + int(fields[19]) * CLOCK_TICK_S


def envoy_live_at(pod: kube.Pod) -> float:
    """When slot a's agent saw its first Envoy LIVE (its state history, Unix time)."""
    agent = upgrade.agent_status(pod["status"]["podIP"], "a")
    assert agent is not None, "slot a's agent does not answer"
    [live] = [e["at"] for e in agent["state"]["history"] if e["slot"] == "a" and e["event"] == "envoy-live"]
    return float(live)


def assert_app_started_after_proxy(pod: kube.Pod) -> dict[str, float]:
    """The app's process started after slot a's Envoy was LIVE; the kubelet's start times agree (a, then
    b, then the app) and the pair is started and ready. The figures, for the report."""
    name = pod["metadata"]["name"]
    a, b = init_status(pod, PAIR[0]), init_status(pod, PAIR[1])
    assert a["started"] and a["ready"] and b["started"] and b["ready"], (a, b)
    started = [
        timestamp(s["state"]["running"]["startedAt"]) for s in (a, b, kube.container_status(pod, "app"))
    ]
    assert started == sorted(started), (name, started)
    [pid] = kube.pod_processes(pod["metadata"]["uid"], "/app/server.py")
    app_started = process_started_at(pid)
    live = envoy_live_at(pod)
    # The app's start is truncated to a tick: it may read up to one tick early, never more.
    assert app_started + CLOCK_TICK_S >= live, (name, {"app_started": app_started, "envoy_live": live})
    return {"app_after_envoy_live_s": round(app_started - live, 3)}


# ---- upgrades ----------------------------------------------------------------------------------------


def serving_epoch(pod: kube.Pod) -> int:
    """The epoch of the active slot's Envoy, which must be serving."""
    status = upgrade.status_of(pod)
    agent = upgrade.agent_status(pod["status"]["podIP"], status.slots[status.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
    return int(agent["epoch"])


def assert_swapped(before: kube.Pod, after: kube.Pod, image: str) -> None:
    """`image` runs in the other init container of the pair, the old one is back on the empty image."""
    old, new = upgrade.status_of(before), upgrade.status_of(after)
    assert new.active == old.standby and new.standby == old.active, (old, new)
    assert new.sidecar_image == image
    assert init_container(after, new.active)["image"] == image
    assert init_container(after, new.standby)["image"] == conftest.EMPTY_IMAGE
    assert_native_pair(after)


def app_unchanged(before: kube.Pod, after: kube.Pod) -> None:
    app_before, app_after = kube.container_status(before, "app"), kube.container_status(after, "app")
    assert app_after["containerID"] == app_before["containerID"] and app_after["restartCount"] == 0


def report(tag: str, figures: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(figures, sort_keys=True)}")


def test_native_upgrade_and_rollback_under_load(api: client.ApiClient, native_namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, native_namespace, "native")
    assert_native_pair(pod)
    ordering = assert_app_started_after_proxy(pod)
    name = pod["metadata"]["name"]
    epoch = serving_epoch(pod)
    load = start_load(pod)
    steps = []
    try:
        for target in (conftest.SIDECAR_IMAGES[1], conftest.BROKEN_IMAGE, conftest.SIDECAR_IMAGES[0]):
            before = kube.get_pod(api, native_namespace, name)
            outcome = upgrade.upgrade(api, native_namespace, name, target, conftest.UPGRADE_TIMEOUT)
            steps.append(
                {
                    "target": target,
                    "phase": outcome.phase,
                    "message": outcome.message,
                    "not_ready_s": outcome.not_ready_s,
                    "requests_so_far": load.summary()["requests"],
                }
            )
            if target == conftest.BROKEN_IMAGE:
                # Rolled back: the same init container still serves, on its image, with its Envoy.
                assert outcome.phase == Phase.FAILED, outcome.message
                old, now = upgrade.status_of(before), upgrade.status_of(outcome.pod)
                assert now.active == old.active and now.sidecar_image == old.sidecar_image, (old, now)
                assert init_container(outcome.pod, old.active)["image"] == old.sidecar_image
                assert (
                    init_status(outcome.pod, old.active)["containerID"]
                    == (init_status(before, old.active)["containerID"])
                )
                assert init_container(outcome.pod, old.standby)["image"] == conftest.EMPTY_IMAGE
                assert serving_epoch(outcome.pod) == epoch
                time.sleep(3)  # the old Envoy keeps serving after the rollback
            else:
                assert outcome.phase == Phase.COMPLETED, outcome.message
                assert_swapped(before, outcome.pod, target)
                assert serving_epoch(outcome.pod) == epoch + 1
                epoch += 1
    finally:
        summary = load.stop()
    final = kube.get_pod(api, native_namespace, name)
    report("NATIVE", {"ordering": ordering, "steps": steps, "load": summary_figures(summary)})
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 100
    assert summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=2)
    app_unchanged(pod, final)


def summary_figures(summary: Any) -> dict[str, Any]:
    keys = ("requests", "failed", "tcp_echoes", "tcp_failed", "http1_connection_close", "http2_goaway")
    return {k: summary[k] for k in (*keys, "p99_ms")}


def test_native_fleet_rollout_under_load(api: client.ApiClient, native_namespace: str) -> None:
    selector = "app=native-fleet"
    pods = conftest.deploy_and_wait(api, native_namespace, "native-fleet", replicas=FLEET_REPLICAS)
    ordering = {}
    for pod in pods:
        assert_native_pair(pod)
        ordering[pod["metadata"]["name"]] = assert_app_started_after_proxy(pod)
    before = {p["metadata"]["name"]: p for p in pods}
    epochs = {name: serving_epoch(p) for name, p in before.items()}
    target = conftest.SIDECAR_IMAGES[1]
    loads: dict[str, LoadGenerator] = {name: start_load(p) for name, p in before.items()}
    cli = str(Path(sys.executable).with_name("hotupgrade"))
    argv = [cli, "rollout", "--direct", "-n", native_namespace, "-l", selector, "--image", target]
    argv += ["--max-unavailable", str(MAX_UNAVAILABLE)]
    try:
        with upgrade.ReadinessWatch(api, native_namespace, label_selector=selector) as ready:
            started = time.monotonic()
            result = subprocess.run(argv, capture_output=True, text=True, timeout=1500, check=False)
            wall_s = time.monotonic() - started
            ready.settle(max(upgrade.NOT_READY_BUDGET_S.values()) + 10.0)
    finally:
        summaries = {name: load.stop() for name, load in loads.items()}
    print(result.stdout)
    print(result.stderr, file=sys.stderr)
    after = {p["metadata"]["name"]: p for p in kube.list_pods(api, native_namespace, selector)}
    report(
        "NATIVE_FLEET",
        {
            "pods": len(before),
            "cli_exit": result.returncode,
            "wall_s": round(wall_s, 1),
            "not_ready_s": ready.not_ready_s(),
            "ordering": ordering,
            "load": {name: summary_figures(s) for name, s in sorted(summaries.items())},
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    upgrade.assert_within_budget(ready, Phase.COMPLETED)
    assert set(after) == set(before), (sorted(before), sorted(after))
    for name, summary in summaries.items():
        assert summary["failed"] == 0, (name, summary["failures"])
        assert summary["requests"] > 50 and summary["tcp_echoes"] > 0, (name, summary)
        assert_tcp_only_cut_at_parent_exit(loads[name], upgrades=1)
    for name, pod in after.items():
        record = upgrade.upgrade_record(pod)
        assert record is not None and record.phase == Phase.COMPLETED and record.to_image == target, record
        assert_swapped(before[name], pod, target)
        assert serving_epoch(pod) == epochs[name] + 1, name
        app_unchanged(before[name], pod)
