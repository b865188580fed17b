"""Fleet rollout with `hotupgrade rollout --direct` (pods by annotation) and a controller killed
mid-upgrade, under load on the real cluster and the in-cluster controller: no failed request, never
more pods in flight than --max-unavailable, the app never restarts, a new controller resumes where the
killed one stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from controller.record import IN_FLIGHT, Phase, UpgradeRecord
from e2e import conftest
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load

pytestmark = pytest.mark.timeout(1800)

FLEET_REPLICAS = 4
MAX_UNAVAILABLE = 2
TARGET = conftest.SIDECAR_IMAGES[1]
HTTP_FIGURES = ("requests", "failed", "http1_connection_close", "http2_goaway", "p99_ms")
TCP_FIGURES = ("tcp_echoes", "tcp_failed")


@dataclass
class FleetWatch:
    """Samples every selected pod (Ready condition, upgrade phase) and a process's RSS from one thread."""

    api: client.ApiClient
    namespace: str
    selector: str
    target: str
    pid: int
    interval: float = 0.2
    not_ready_s: dict[str, float] = field(default_factory=dict)
    max_in_flight: int = 0
    in_flight_seen: set[str] = field(default_factory=set)
    rss_kib: list[int] = field(default_factory=list)
    samples: int = 0
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            rss = kube.rss_kib(self.pid)
            if rss is not None:
                self.rss_kib.append(rss)
            try:
                pods = kube.list_pods(self.api, self.namespace, self.selector)
            except Exception:  # an API hiccup is not a NotReady pod; counted so a broken watch shows
                self.errors += 1
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            flying = set()
            for pod in pods:
                name = pod["metadata"]["name"]
                self.not_ready_s.setdefault(name, 0.0)
                if not kube.condition(pod, "Ready"):
                    self.not_ready_s[name] += now - last
                record = upgrade.upgrade_record(pod)
                if record is not None and record.to_image == self.target and record.phase in IN_FLIGHT:
                    flying.add(name)
            self.in_flight_seen |= flying
            self.max_in_flight = max(self.max_in_flight, len(flying))
            last = now
            self.samples += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


def epoch_of(pod: kube.Pod) -> int | None:
    status = upgrade.status_of(pod)
    agent = upgrade.agent_status(pod["status"]["podIP"], status.slots[status.active]) or {}
    epoch = agent.get("epoch")
    return int(epoch) if isinstance(epoch, int) else None


def assert_upgraded(before: kube.Pod, after: kube.Pod, image: str, epoch_before: int | None) -> None:
    """`image` active in the other slot, the old one empty, epoch + 1, the app never restarted."""
    old, new = upgrade.status_of(before), upgrade.status_of(after)
    name = after["metadata"]["name"]
    record = upgrade.upgrade_record(after)
    assert record is not None and record.phase == Phase.COMPLETED and record.to_image == image, (name, record)
    assert new.active == old.standby and new.standby == old.active, (name, old, new)
    assert kube.container_image(after, new.active) == image, name
    assert kube.container_image(after, new.standby) == conftest.EMPTY_IMAGE, name
    agent = upgrade.agent_status(after["status"]["podIP"], new.slots[new.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", (name, agent)
    assert epoch_before is not None and agent["epoch"] == epoch_before + 1, (name, epoch_before, agent)
    app_before, app_after = kube.container_status(before, "app"), kube.container_status(after, "app")
    assert app_after["containerID"] == app_before["containerID"], name
    assert app_after["restartCount"] == 0, name


def upgrade_seconds(pod: kube.Pod) -> float | None:
    """Started -> finished of the pod's last upgrade record, as the controller wrote them."""
    record = upgrade.upgrade_record(pod)
    if record is None or record.finished is None:
        return None
    return round((record.finished - record.started).total_seconds(), 1)


def load_figures(summary: Any) -> dict[str, Any]:
    """The load summary's headline figures (what test_upgrade prints too)."""
    return {k: summary[k] for k in HTTP_FIGURES + TCP_FIGURES}


def report(tag: str, figures: dict[str, Any]) -> None:
    """One JSON line on stdout (`pytest -s`) and in /tmp/hotupgrade-e2e-fleet.jsonl for the closing note."""
    line = f"{tag} {json.dumps(figures, sort_keys=True)}"
    print(line)
    with open(os.environ.get("E2E_FLEET_RESULTS", "/tmp/hotupgrade-e2e-fleet.jsonl"), "a") as out:
        out.write(line + "\n")


def controller_restarts(api: client.ApiClient, of: release.Release, pod_name: str) -> int | None:
    """restartCount of a controller pod's container (None once the pod is gone)."""
    pod = release.controller_pods(api, of).get(pod_name)
    return None if pod is None else int(kube.container_status(pod, "controller").get("restartCount", 0))


def test_fleet_rollout_with_cli_under_load(
    api: client.ApiClient, suite_release: release.Release, namespace: str
) -> None:
    pods = conftest.deploy_and_wait(api, namespace, "fleet", replicas=FLEET_REPLICAS)
    # The leading controller, whose process on this node is sampled for RSS; it must neither die nor
    # lose its lease during the rollout.
    leader = release.wait_leader(api, suite_release)
    leader_name = leader["metadata"]["name"]
    restarts = controller_restarts(api, suite_release, leader_name)
    pid = release.controller_pid(leader)
    before = {p["metadata"]["name"]: p for p in pods}
    epochs = {name: epoch_of(p) for name, p in before.items()}
    assert all(e is not None for e in epochs.values()), epochs
    loads = {name: start_load(p) for name, p in before.items()}
    watch = FleetWatch(api, namespace, "app=fleet", TARGET, pid)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    cli = str(Path(sys.executable).with_name("hotupgrade"))
    argv = [cli, "rollout", "--direct", "-n", namespace, "-l", "app=fleet", "--image", TARGET]
    argv += ["--max-unavailable", str(MAX_UNAVAILABLE)]
    try:
        with upgrade.ReadinessWatch(api, namespace, label_selector="app=fleet") as ready:
            started = time.monotonic()
            result = subprocess.run(argv, capture_output=True, text=True, timeout=1500, check=False)
            wall_s = time.monotonic() - started
            ready.settle(max(upgrade.NOT_READY_BUDGET_S.values()) + 10.0)
    finally:
        watch.stop()
        thread.join(10)
        summaries = {name: load.stop() for name, load in loads.items()}
    print(result.stdout)
    print(result.stderr, file=sys.stderr)
    rss = watch.rss_kib
    after = {p["metadata"]["name"]: p for p in kube.list_pods(api, namespace, "app=fleet")}
    report(
        "FLEET",
        {
            "pods": len(before),
            "max_unavailable": MAX_UNAVAILABLE,
            "image": TARGET,
            "cli_exit": result.returncode,
            "wall_s": round(wall_s, 1),
            "max_in_flight": watch.max_in_flight,
            "not_ready_s": {n: round(s, 2) for n, s in sorted(watch.not_ready_s.items())},
            "upgrade_s": {n: upgrade_seconds(p) for n, p in sorted(after.items())},
            "watch_samples": watch.samples,
            "watch_errors": watch.errors,
            "controller_rss_mib": {
                "first": round(rss[0] / 1024, 1) if rss else None,
                "max": round(max(rss) / 1024, 1) if rss else None,
                "last": round(rss[-1] / 1024, 1) if rss else None,
                "samples": len(rss),
            },
            "load": {n: load_figures(s) for n, s in sorted(summaries.items())},
            "requests_total": sum(s["requests"] for s in summaries.values()),
            "failed_total": sum(s["failed"] for s in summaries.values()),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    upgrade.assert_within_budget(ready, Phase.COMPLETED)
    # The measurements themselves must have worked.
    assert watch.samples > 20 and watch.errors <= watch.samples // 10, (watch.samples, watch.errors)
    assert rss, "controller RSS was never sampled"
    assert kube.rss_kib(pid) is not None, "the controller died during the rollout"
    assert controller_restarts(api, suite_release, leader_name) == restarts, "the controller restarted"
    assert release.leader(api, suite_release) == leader_name, "the controller lost its lease"
    assert watch.in_flight_seen == set(before), watch.in_flight_seen
    max_in_flight = watch.max_in_flight
    assert 1 <= max_in_flight <= MAX_UNAVAILABLE, max_in_flight
    for name, summary in summaries.items():
        assert summary["failed"] == 0, (name, summary["failures"])
        assert summary["requests"] > 50, (name, summary["requests"])
        assert summary["tcp_echoes"] > 0, name
        assert_tcp_only_cut_at_parent_exit(loads[name], upgrades=1)
    assert set(after) == set(before), (sorted(before), sorted(after))
    for name, pod in after.items():
        assert_upgraded(before[name], pod, TARGET, epochs[name])


def upgrade_events(api: client.ApiClient, namespace: str, pod: str, reason: str) -> int:
    """How many times `reason` was recorded on the pod (Events may be aggregated: their counts add up)."""
    selector = f"involvedObject.name={pod},involvedObject.kind=Pod"
    resp = kube.core(api).list_namespaced_event(namespace, field_selector=selector, _preload_content=False)
    items = json.loads(resp.data)["items"]
    return sum(int(e.get("count") or 1) for e in items if e.get("reason") == reason)


def kill_leader(api: client.ApiClient, of: release.Release, how: str) -> tuple[str, int | None]:
    """Kill the leading controller: `delete-pod` deletes its pod with grace 0 (what a node drain or a
    forced delete does to it), `sigkill` crashes its process (no lease release; the kubelet restarts
    it). The pod's name and its container's restartCount before."""
    pod = release.wait_leader(api, of)
    name = pod["metadata"]["name"]
    restarts = controller_restarts(api, of, name)
    if how == "delete-pod":
        kube.core(api).delete_namespaced_pod(name, of.namespace, grace_period_seconds=0)
    else:
        release.kill_controller(pod)
    return name, restarts


@pytest.mark.parametrize(("kill_in", "how"), [(Phase.TAKING_OVER, "delete-pod"), (Phase.DRAINING, "sigkill")])
def test_controller_killed_mid_upgrade_resumes(
    api: client.ApiClient, suite_release: release.Release, namespace: str, kill_in: Phase, how: str
) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "restart")
    name = pod["metadata"]["name"]
    epoch_before = epoch_of(pod)
    release.wait_leader(api, suite_release)
    load = start_load(pod)
    try:
        with upgrade.ReadinessWatch(api, namespace, field_selector=f"metadata.name={name}") as ready:
            upgrade.annotate_target(api, namespace, name, TARGET)

            def mid_upgrade() -> UpgradeRecord | None:
                record = upgrade.upgrade_record(kube.get_pod(api, namespace, name))
                if record is None or record.to_image != TARGET or record.phase != kill_in:
                    return None
                # The controller patches the record, then posts the Event: a kill between the two leaves the
                # Event owed to the next controller, which is not what this test is about.
                return record if upgrade_events(api, namespace, name, "UpgradeStarted") else None

            at_kill = kube.wait_until(kill_in, mid_upgrade, conftest.UPGRADE_TIMEOUT, interval=0.1)
            killed, restarts = kill_leader(api, suite_release, how)
            outcome = upgrade.wait_controller_outcome(api, namespace, name, TARGET, conftest.UPGRADE_TIMEOUT)
            time.sleep(3)  # the new Envoy must keep serving after the old container was reset
    finally:
        summary = load.stop()
    final = upgrade.upgrade_record(outcome.pod)
    started_events = upgrade_events(api, namespace, name, "UpgradeStarted")
    new_leader = release.wait_leader(api, suite_release)["metadata"]["name"]
    report(
        "RESTART",
        {
            "killed_in": at_kill.phase,
            "killed_by": how,
            "final_phase": outcome.phase,
            "message": outcome.message,
            "attempt": [at_kill.attempt, final.attempt if final else None],
            "leader": [killed, new_leader],
            "upgrade_started_events": started_events,
            "load": load_figures(summary),
        },
    )
    if how == "delete-pod":
        assert killed not in release.controller_pods(api, suite_release) and new_leader != killed
    else:
        # The kubelet restarted the crashed process; whichever replica leads now resumed the upgrade.
        assert restarts is not None and (controller_restarts(api, suite_release, killed) or 0) > restarts
    assert outcome.phase == Phase.COMPLETED, outcome.message
    upgrade.assert_within_budget(ready, Phase.COMPLETED)
    # The new controller resumed the same upgrade rather than starting another one.
    assert final is not None and final.attempt == at_kill.attempt and final.started == at_kill.started
    assert started_events == 1, started_events
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 50
    assert_tcp_only_cut_at_parent_exit(load, upgrades=1)
    assert_upgraded(pod, outcome.pod, TARGET, epoch_before)
