"""The controller's PodDisruptionBudget gate against a real kube-apiserver (issue 12, scenario 7): three
pods of a workload annotated at once, a PDB allowing one disruption; the controller upgrades them one at
a time, holding the others Pending with the budget named, and posts one Event per held pod. A
SidecarRelease whose maxUnavailable allows more is held to the PDB too, and its status says why.

Measured by a watch on the pods from a list's resourceVersion: every write the controller makes is seen
in order, so the peak of pods past Pending is exact, not sampled. The same run without the gate
(`--no-disruption-budgets`) is the control: it shows the measurement sees concurrent upgrades.
Kubelet and agents are simulated (fakes.py), as in the other controller tests.
"""

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.main import Controller
from controller.record import Phase
from controller.rollout import pod_facts, touched
from tests.integration.controller.conftest import running_controller
from tests.integration.controller.fakes import NEW, Background, KubeletSim, wait_until
from tests.integration.controller.releases import (
    condition,
    create_release,
    delete_release,
    install_crd,
    release_doc,
    release_loop,
    unique,
)
from tests.integration.controller.test_reconcile_apiserver import make_reconciler
from tests.integration.controller.test_release_apiserver import (
    complete,
    drive,
    read,
    sidecar_images,
    targets,
)
from tests.integration.controller.test_rollout_budgets_apiserver import create_pdb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PODS = ("web-0", "web-1", "web-2")


class StartWatch:
    """Follows the namespace's pods by watch and keeps the peak number past Pending (started, not ended),
    every record message seen, and when each pod started and ended."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.peak = 0
        self.events = 0
        self.messages: dict[str, list[str]] = {}
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.errors: list[BaseException] = []
        self._busy: dict[str, bool] = {}
        self._stop = threading.Event()
        _, version = kube.list_pods(namespace)
        self._thread = threading.Thread(target=self._run, args=(kube, namespace, version), daemon=True)
        self._thread.start()

    def _run(self, kube: Kube, namespace: str, version: str) -> None:
        try:
            while not self._stop.is_set():
                for event in kube.watch_pods(namespace, resource_version=version, timeout_seconds=5):
                    raw: dict[str, Any] = event.get("object") or {}
                    version = str((raw.get("metadata") or {}).get("resourceVersion", version))
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._seen(raw)
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def _seen(self, raw: dict[str, Any]) -> None:
        facts = pod_facts(raw)
        self.events += 1
        record = facts.record
        if record is None:
            return
        messages = self.messages.setdefault(facts.name, [])
        if not messages or messages[-1] != record.message:
            messages.append(record.message)
        now = time.monotonic()
        self._busy[facts.name] = touched(facts)
        if touched(facts):
            self.started.setdefault(facts.name, now)
        if record.phase is Phase.COMPLETED:
            self.ended.setdefault(facts.name, now)
        self.peak = max(self.peak, sum(self._busy.values()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        assert self.errors == [], self.errors


@pytest.fixture
def run_controller(kube: Kube, namespace: str, sim: KubeletSim) -> Iterator[Callable[..., None]]:
    """start(gate=): the controller with four workers (more than the pods, so all three could be decided
    at once), with or without its PodDisruptionBudget gate; plus the simulated kubelet."""
    running: list[tuple[Controller, Background]] = []

    def start(*, gate: bool) -> None:
        running.append((running_controller(kube, namespace, workers=4, gate=gate), Background(sim.sync_all)))

    yield start
    for controller, kubelet in running:
        kubelet.close()
        controller.shut_down()
        assert kubelet.errors == []


def completed(kube: Kube, namespace: str) -> bool:
    pods, _ = kube.list_pods(namespace, label_selector="app=web")
    records = [pod_facts(p).record for p in pods]
    return len(records) == len(PODS) and all(r is not None and r.phase is Phase.COMPLETED for r in records)


def held_events(kube: Kube, namespace: str, name: str) -> list[dict[str, Any]]:
    return [e for e in kube.list_events(namespace, name) if e.get("reason") == "WaitingForDisruptionBudget"]


def upgrade_all(
    kube: Kube, namespace: str, sim: KubeletSim, run_controller: Callable[..., None], *, gate: bool
) -> tuple[StartWatch, float, float]:
    """Three pods under `web-pdb` (minAvailable 2 of 3: one disruption; an integer, since pods without a
    controller have no scale), all annotated at once; returns the watch, the start time and the seconds
    until all three were Completed."""
    for name in PODS:
        sim.add_pod(name, drain_seconds=1.0)
    create_pdb(kube, namespace, {"minAvailable": 2})
    run_controller(gate=gate)
    watch = StartWatch(kube, namespace)
    began = time.monotonic()
    for name in PODS:
        kube.merge_patch_pod(namespace, name, {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}})
    wait_until(lambda: completed(kube, namespace), timeout=180, what="all three upgrades Completed")
    took = time.monotonic() - began
    watch.stop()
    return watch, began, took


def test_three_annotated_pods_under_a_pdb_allowing_one_are_upgraded_one_at_a_time(
    kube: Kube, namespace: str, sim: KubeletSim, run_controller: Callable[..., None]
) -> None:
    watch, began, took = upgrade_all(kube, namespace, sim, run_controller, gate=True)
    order = sorted(PODS, key=lambda n: watch.started[n])
    print(f"\ngate on: {took:.1f}s for 3 upgrades, {watch.events} pod events, peak past Pending {watch.peak}")
    for name in order:
        started, ended = watch.started[name] - began, watch.ended[name] - began
        print(f"  {name}: started {started:.2f}s, completed {ended:.2f}s")
    assert watch.peak == 1, f"the PDB allows one disruption; {watch.peak} pods were past Pending at once"
    for first, second in itertools.pairwise(order):
        assert watch.started[second] >= watch.ended[first], f"{second} started before {first} ended"
    waiting = "waiting for PodDisruptionBudget web-pdb: "
    held = [n for n in PODS if any(m.startswith(waiting) for m in watch.messages[n])]
    assert sorted(held) == sorted(order[1:]), (held, watch.messages)
    expected = f"{waiting}1 of 1 allowed disruption(s) in use ({order[0]} upgrading)"
    assert expected in watch.messages[order[1]], watch.messages[order[1]]
    for name in held:
        assert len(held_events(kube, namespace, name)) == 1, f"one WaitingForDisruptionBudget for {name}"
    assert held_events(kube, namespace, order[0]) == []


def test_without_the_gate_the_same_pods_go_at_once(
    kube: Kube, namespace: str, sim: KubeletSim, run_controller: Callable[..., None]
) -> None:
    """The control: `--no-disruption-budgets` (the controller before the gate) starts them together, so
    the watch above would see a violation."""
    watch, _, took = upgrade_all(kube, namespace, sim, run_controller, gate=False)
    print(f"\ngate off: {took:.1f}s for 3 upgrades, peak past Pending {watch.peak}")
    assert watch.peak >= 2, f"without the gate the upgrades overlap (peak {watch.peak})"


# --- SidecarReleases: the planner picks, the gate defers -------------------------------------------


@pytest.fixture
def release_names(kube: Kube) -> Iterator[list[str]]:
    """Releases a test created (cluster-scoped: deleted after it); the chart's CRD installed first."""
    install_crd(kube)
    created: list[str] = []
    yield created
    for name in created:
        delete_release(kube, name)


def test_a_release_is_held_to_the_pdb_below_its_max_unavailable(
    kube: Kube, namespace: str, sim: KubeletSim, release_names: list[str]
) -> None:
    """maxUnavailable 3 would start three pods at once; minAvailable 3 of 4 allows one: the release sets
    one target, defers the rest naming the budget, and moves on one pod at a time."""
    for index in range(4):
        sim.add_pod(f"web-{index}")
    create_pdb(kube, namespace, {"minAvailable": 3})
    pods, _ = make_reconciler(kube)
    with release_loop(kube, namespace, gate=True) as loop:
        name = unique("hu-rel")
        create_release(kube, release_doc(name, namespace, NEW, strategy={"maxUnavailable": 3}))
        release_names.append(name)
        loop.cached(name)
        loop.reconciler.reconcile(name)
        assert [n for n, image in targets(kube, namespace).items() if image] == ["web-0"]
        status = read(kube, name)["status"]
        assert status["upgradingPods"] == 1, status
        progressing = condition(read(kube, name), "Progressing")
        assert progressing == (
            "True",
            "WaitingForDisruptionBudget",
            f"1 pod(s) upgrading to {NEW}; 2 pod(s) held back, {namespace}/web-1 waiting for "
            "PodDisruptionBudget web-pdb: 1 of 1 allowed disruption(s) in use (web-0 upgrade queued)",
        ), progressing
        done = drive(loop, pods, sim, name, until=complete("AllPodsUpdated"), allowed=1)
    assert done["worst"] == 1, "one pod at a time, the budget used"
    assert set(sidecar_images(kube, namespace).values()) == {NEW}
