"""nativeSidecar mode against the real kube-apiserver (cases/native-sidecar-pod.json): the controller reads
the kubelet version from the pod's Node and refuses kubelets older than 1.32 before touching the pod; a
kubelet that ignores the image change anyway is named within `kubelet_grace` and the rollback ends at
once, instead of a TakeOverTimeout and a false "rollback incomplete" ten minutes later.

The Node objects are made up (no kubelet behind them), cordoned and tainted so nothing else lands there.
"""

import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.agents import AgentClient
from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.reconciler import Reconciler
from controller.record import Phase, Reason
from tests.integration.controller.fakes import EMPTY, NEW, KubeletSim
from tests.integration.controller.test_reconcile_apiserver import (
    POLICY,
    annotate,
    drive,
    event_reasons,
    phase_is,
    record_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MakeNode = Callable[[str], str]


@pytest.fixture
def make_node(kube: Kube) -> Iterator[MakeNode]:
    """Create a Node whose status says its kubelet is `version`; deleted at teardown."""
    core: Any = kube.core
    made: list[str] = []

    def make(version: str) -> str:
        name = f"hu-kubelet-{version.replace('.', '-')}-{secrets.token_hex(3)}"
        node = {
            "metadata": {"name": name, "labels": {"hotupgrade.io/test-node": "true"}},
            "spec": {
                "unschedulable": True,
                "taints": [{"key": "hotupgrade.io/test-node", "value": "true", "effect": "NoSchedule"}],
            },
        }
        core.create_node(node, _preload_content=False)
        made.append(name)
        status = {"status": {"nodeInfo": {"kubeletVersion": version}}}
        core.patch_node_status(
            name, status, _content_type="application/merge-patch+json", _preload_content=False
        )
        return name

    yield make
    for name in made:
        core.delete_node(name, _preload_content=False)


def native_reconciler(kube: Kube) -> Reconciler:
    policy = replace(POLICY, kubelet_grace=2.0)
    return Reconciler(kube, AgentClient(timeout=2.0), policy, metrics=ControllerMetrics(CollectorRegistry()))


def init_image(pod: dict[str, Any], name: str) -> str:
    return str(next(c["image"] for c in pod["spec"]["initContainers"] if c["name"] == name))


def test_a_kubelet_older_than_1_32_is_refused_before_the_pod_changes(
    kube: Kube, namespace: str, sim: KubeletSim, make_node: MakeNode
) -> None:
    node = make_node("v1.30.4")
    sim.add_pod("web-0", node_name=node, native=True)
    reconciler = native_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    assert reconciler.reconcile(namespace, "web-0").done, "refused in one reconcile"
    pod: Any = kube.get_pod(namespace, "web-0")
    record = record_of(pod)
    assert record is not None and record.reason is Reason.KUBELET_UNSUPPORTED
    assert f"node {node} runs kubelet v1.30.4" in record.message and "kubernetes#126525" in record.message
    assert init_image(pod, "hotupgrade-b") == EMPTY
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeFailed"]


def test_a_kubelet_that_ignores_the_image_change_is_named_in_seconds(
    kube: Kube, namespace: str, sim: KubeletSim, make_node: MakeNode
) -> None:
    node = make_node("v1.32.0")  # says it restarts native sidecars, but does not: caught all the same
    sim.ignores_native_image_change = True
    sim.add_pod("web-0", node_name=node, native=True)
    reconciler = native_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    started = time.monotonic()
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.FAILED), timeout=30)
    took = time.monotonic() - started
    record = record_of(pod)
    assert record is not None and record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE, record
    assert "did not restart hotupgrade-b within 2s" in record.message and "rolled back" in record.message
    assert "rollback incomplete" not in record.message
    assert took < 20 < POLICY.step_timeout + 1, f"named after {took:.0f}s, not after the step timeout"
    assert init_image(pod, "hotupgrade-b") == EMPTY
    assert json.loads(pod["metadata"]["annotations"]["hotupgrade.io/planned-restarts"]) == {"hotupgrade-b": 0}
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeStarted", "UpgradeFailed", "RolledBack"]


def test_a_kubelet_from_1_32_upgrades_native_sidecars(
    kube: Kube, namespace: str, sim: KubeletSim, make_node: MakeNode
) -> None:
    sim.add_pod("web-0", node_name=make_node("v1.34.4"), native=True)
    reconciler = native_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    done = drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED, Phase.FAILED))
    record = record_of(done)
    assert record is not None and record.phase is Phase.COMPLETED, record
    assert init_image(done, "hotupgrade-b") == NEW and init_image(done, "hotupgrade-a") == EMPTY


def kubelet_said(kube: Kube, pod: dict[str, Any], container: str, reason: str, message: str) -> None:
    """Record an Event as a kubelet does (core/v1, source kubelet, the container's fieldPath)."""
    meta = pod["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {
        "apiVersion": "v1",
        "kind": "Pod",
        "namespace": meta["namespace"],
        "name": meta["name"],
        "uid": meta["uid"],
        "fieldPath": f"spec.initContainers{{{container}}}",
    }
    body = {
        "metadata": {"generateName": f"{meta['name']}."},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": "Normal",
        "source": {"component": "kubelet", "host": pod["spec"]["nodeName"]},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    kube.create_event(meta["namespace"], body)


def test_a_kubelet_that_acts_but_shows_it_late_is_waited_for(
    kube: Kube, namespace: str, sim: KubeletSim, make_node: MakeNode
) -> None:
    # A real kubelet publishes the pod's status when a sync starts, and the sync that starts the target
    # ends with its postStart hook: the API server shows the old container meanwhile, as the sim does
    # here; the kubelet's Events say it acted. Judged ignored, a good (slow) upgrade was rolled back.
    sim.ignores_native_image_change = True
    sim.add_pod("web-0", node_name=make_node("v1.34.4"), native=True)
    reconciler = native_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    swapped = drive(reconciler, sim, "web-0", phase_is(Phase.TAKING_OVER), timeout=10)
    started = time.monotonic()
    why = "Container hotupgrade-b definition changed, will be restarted"
    kubelet_said(kube, swapped, "hotupgrade-b", "Killing", why)
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.FAILED), timeout=POLICY.step_timeout + 20)
    took = time.monotonic() - started
    record = record_of(pod)
    # Nothing took over, so the step timeout ends it, not the 2 s kubelet grace.
    assert record is not None and record.reason is Reason.TAKE_OVER_TIMEOUT, record
    assert took > POLICY.step_timeout - 3, f"rolled back after {took:.0f}s"
    assert init_image(pod, "hotupgrade-b") == EMPTY
