"""Per-pod annotations under a PodDisruptionBudget on the real cluster (issue 12, scenario 7): the three
replicas of a Deployment annotated at once, a PDB with maxUnavailable 1 (the disruption controller knows
the Deployment's scale, so its status is fresh and allows one disruption): the in-cluster controller
upgrades one pod at a time, holds the others Pending naming the budget, and no request fails.

How many pods are past Pending is measured by a watch on the pods (every write the controller makes is an
event, in order), not by sampling.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch

from clusterkit import kube, release, upgrade
from controller.record import IN_FLIGHT, Phase
from e2e import conftest
from e2e.test_fleet import assert_upgraded, epoch_of, load_figures, report, upgrade_seconds
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load

pytestmark = pytest.mark.timeout(1200)

REPLICAS = 3
TARGET = conftest.SIDECAR_IMAGES[1]
PDB = "budget-pdb"


class PastPending:
    """Watches the namespace's pods: the peak number whose upgrade is past Pending and not ended, and
    every record message each pod showed."""

    def __init__(self, api: client.ApiClient, namespace: str, selector: str) -> None:
        self.peak = 0
        self.events = 0
        self.error: str | None = None
        self.messages: dict[str, list[str]] = {}
        self._busy: dict[str, bool] = {}
        self._watch: Any = watch.Watch()  # type: ignore[no-untyped-call]
        self._stopping = threading.Event()
        listing = json.loads(
            kube.core(api)
            .list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
            .data
        )
        self._thread = threading.Thread(
            target=self._run,
            args=(api, namespace, selector, listing["metadata"]["resourceVersion"]),
            daemon=True,
        )
        self._thread.start()

    def _run(self, api: client.ApiClient, namespace: str, selector: str, version: str) -> None:
        stream = self._watch.stream(
            kube.core(api).list_namespaced_pod, namespace, label_selector=selector, resource_version=version
        )
        try:
            for event in stream:
                pod = event["raw_object"]
                self.events += 1
                record = upgrade.upgrade_record(pod)
                if record is None:
                    continue
                name = pod["metadata"]["name"]
                shown = self.messages.setdefault(name, [])
                if not shown or shown[-1] != record.message:
                    shown.append(record.message)
                self._busy[name] = record.phase in IN_FLIGHT and record.phase is not Phase.PENDING
                self.peak = max(self.peak, sum(self._busy.values()))
        except Exception as exc:  # a broken watch must fail the measurement, not pass it silently
            if not self._stopping.is_set():
                self.error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        self._stopping.set()
        self._watch.stop()
        self._thread.join(10)


def create_pdb(api: client.ApiClient, namespace: str, app: str) -> None:
    policy: Any = client.PolicyV1Api(api)  # raw dict bodies; the typed client wants models
    spec = {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}}
    policy.create_namespaced_pod_disruption_budget(namespace, {"metadata": {"name": PDB}, "spec": spec})

    def fresh() -> dict[str, Any] | None:
        raw = policy.read_namespaced_pod_disruption_budget(PDB, namespace, _preload_content=False)
        pdb: dict[str, Any] = json.loads(raw.data)
        status = pdb.get("status") or {}
        ok = status.get("observedGeneration") == pdb["metadata"]["generation"] and status.get("expectedPods")
        return status if ok else None

    status = kube.wait_until(f"{PDB} status from the disruption controller", fresh, 120, interval=1.0)
    assert (status["expectedPods"], status["disruptionsAllowed"]) == (REPLICAS, 1), status


def completed(api: client.ApiClient, namespace: str, selector: str) -> list[kube.Pod] | None:
    pods = kube.list_pods(api, namespace, selector)
    records = [upgrade.upgrade_record(p) for p in pods]
    done = all(r is not None and r.to_image == TARGET and r.phase is Phase.COMPLETED for r in records)
    return pods if done and len(pods) == REPLICAS else None


def test_annotated_pods_under_a_pdb_are_upgraded_one_at_a_time_under_load(
    api: client.ApiClient, suite_release: release.Release, namespace: str
) -> None:
    selector = "app=budget"
    pods = conftest.deploy_and_wait(api, namespace, "budget", replicas=REPLICAS)
    create_pdb(api, namespace, "budget")
    before = {p["metadata"]["name"]: p for p in pods}
    epochs = {name: epoch_of(p) for name, p in before.items()}
    loads = {name: start_load(p) for name, p in before.items()}
    tracker = PastPending(api, namespace, selector)
    try:
        with upgrade.ReadinessWatch(api, namespace, label_selector=selector) as ready:
            started = time.monotonic()
            for name in before:
                upgrade.annotate_target(api, namespace, name, TARGET)
            after_pods = kube.wait_until(
                "three upgrades Completed", lambda: completed(api, namespace, selector), 900, interval=1.0
            )
            wall_s = time.monotonic() - started
            ready.settle(max(upgrade.NOT_READY_BUDGET_S.values()) + 10.0)
    finally:
        tracker.stop()
        summaries = {name: load.stop() for name, load in loads.items()}
    after = {p["metadata"]["name"]: p for p in after_pods}
    held = sorted(
        name
        for name, shown in tracker.messages.items()
        if any(m.startswith(f"waiting for PodDisruptionBudget {PDB}: ") for m in shown)
    )
    report(
        "PDB",
        {
            "pods": REPLICAS,
            "pdb": "maxUnavailable 1",
            "image": TARGET,
            "wall_s": round(wall_s, 1),
            "peak_past_pending": tracker.peak,
            "watch_events": tracker.events,
            "held": held,
            "held_messages": {
                n: [m for m in shown if m.startswith("waiting for")] for n, shown in tracker.messages.items()
            },
            "not_ready_s": ready.not_ready_s(),
            "upgrade_s": {n: upgrade_seconds(p) for n, p in sorted(after.items())},
            "load": {n: load_figures(s) for n, s in sorted(summaries.items())},
            "failed_total": sum(s["failed"] for s in summaries.values()),
        },
    )
    assert tracker.error is None, tracker.error
    assert tracker.events > 10, tracker.events
    assert tracker.peak == 1, f"maxUnavailable 1, yet {tracker.peak} upgrades were past Pending at once"
    assert len(held) == REPLICAS - 1, tracker.messages
    upgrade.assert_within_budget(ready, Phase.COMPLETED)
    for name, summary in summaries.items():
        assert summary["failed"] == 0, (name, summary["failures"])
        assert summary["requests"] > 50, (name, summary["requests"])
        assert_tcp_only_cut_at_parent_exit(loads[name], upgrades=1)
    assert set(after) == set(before)
    for name, pod in after.items():
        assert_upgraded(before[name], pod, TARGET, epochs[name])
