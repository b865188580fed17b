"""Hot upgrades whose target the kubelet really pulls from the node's registry (the private instance for
the target, behind basic auth): how long the pod is NotReady (out of its Service's endpoints) per upgrade,
with the controller's pre-pull on and off, under load through a ClusterIP Service and to the pod IP.

Every upgrade goes to a fresh target (e2e/pulltarget.py): the suite's target plus one layer of
EXTRA_LAYER_BYTES random bytes under a new tag, which no node holds, so every upgrade pulls that layer
for real. With pre-pull the pull happens in the controller's pre-pull pod (which pulls with the pod's
imagePullSecrets) and the swap finds the image present; without it the kubelet pulls during the swap.
Figures: one JSON line per upgrade, then the load totals. Needs the local cluster with its registry
(`python -m localcluster up`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusterkit import images, kube, release, upgrade
from clusterkit.suite import answers, service_manifest, start_load_to
from controller.prepull import PRE_PULL_NAME_PREFIX
from controller.record import Phase
from e2e import conftest, pulls, pulltarget
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, upgrade_once
from localcluster.helm import CHART
from podharness.load import LoadGenerator

pytestmark = [
    pytest.mark.timeout(2400),
    pytest.mark.skipif(
        images.local_registry() is None,
        reason="needs the local cluster's registry and containerd (KUBECONFIG = its admin kubeconfig)",
    ),
]

APP = "pullwin"  # one pod per pre-pull mode: pullwin-on, pullwin-off
UPGRADES = 2  # per pod, each to its own fresh target
TARGET_BASE = conftest.SIDECAR_IMAGES[1]  # the private instance's target, what fresh targets derive from


def controller_prepull_flag(pod: kube.Pod) -> bool | None:
    """Whether a controller pod runs with pre-pull (None if its args say neither)."""
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "controller"]
    args = container.get("args", [])
    return True if "--prepull" in args else False if "--no-prepull" in args else None


@contextlib.contextmanager
def controller_prepull(api: client.ApiClient, of: release.Release, enabled: bool) -> Iterator[None]:
    """The release's controller with pre-pull `enabled` (helm upgrade --reuse-values), restored after."""
    before = controller_prepull_flag(release.wait_leader(api, of))
    if before == enabled:
        yield
        return
    set_prepull(api, of, enabled)
    try:
        yield
    finally:
        set_prepull(api, of, not enabled)


def set_prepull(api: client.ApiClient, of: release.Release, enabled: bool) -> None:
    release.helm(
        "upgrade", of.name, str(CHART), "--namespace", of.namespace, "--reuse-values",
        "--set", f"controller.prePull={str(enabled).lower()}", "--wait", "--timeout", release.HELM_WAIT,
    )  # fmt: skip

    def leads() -> bool:
        pod = release.wait_leader(api, of)
        return pod["metadata"].get("deletionTimestamp") is None and controller_prepull_flag(pod) is enabled

    kube.wait_until(f"a controller with prePull={enabled} leads", leads, 180, interval=1.0)


def namespace_events(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    resp = kube.core(api).list_namespaced_event(namespace, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def measured_upgrade(
    api: client.ApiClient,
    *,
    namespace: str,
    name: str,
    target: pulltarget.FreshTarget,
    prepull: bool,
    loads: dict[str, LoadGenerator],
) -> dict[str, Any]:
    """One upgrade to a target the node does not hold: outcome, NotReady window, who pulled how long."""
    image, layer = target.image, target.layer
    # Neither the image nor its random layer is on the node: the pull has to download the layer.
    assert not pulls.on_node(image)
    assert layer.digest not in pulls.blobs_on_node()
    seen = pulls.event_versions(namespace_events(api, namespace))
    started = time.monotonic()
    # Without pre-pull the kubelet pulls during the swap: measured here, not held to the budget.
    budget = upgrade.NOT_READY_BUDGET_S if prepull else None
    outcome, window = upgrade_once(api, namespace=namespace, name=name, image=image, budget=budget)
    took = time.monotonic() - started
    assert outcome.phase == Phase.COMPLETED, outcome.message

    def pulled() -> tuple[list[pulls.Pull]] | None:
        found = pulls.pulls_of(pulls.new_since(namespace_events(api, namespace), seen), image)
        by_helper = [p for p in found if p.pod.startswith(PRE_PULL_NAME_PREFIX) and p.seconds is not None]
        # The pre-pull pod is new each time, so its events always arrive; the upgraded pod's own events
        # may be dropped after many (client-go's per-object spam filter), so without pre-pull the proof
        # is the image back on the node with no pre-pull pod involved.
        return (found,) if (by_helper if prepull else pulls.on_node(image)) else None

    [found] = kube.wait_until(f"the pull of {image}", pulled, 60, interval=1.0)
    # The random layer reached the node, and only the registry held it: real bytes were pulled.
    assert layer.digest in pulls.blobs_on_node()
    by_helper = [p for p in found if p.pod.startswith(PRE_PULL_NAME_PREFIX)]
    by_pod = [p for p in found if p.pod == name]
    if prepull:
        # One real pull, by the pre-pull pod; the swap found the image present.
        assert len([p for p in by_helper if p.seconds is not None]) == 1, found
        assert all(p.seconds is None for p in by_pod), found
        pull = by_helper[0]
    else:
        assert not by_helper, found
        pull = next((p for p in by_pod if p.seconds is not None), pulls.Pull(name, image, None, None))
    # The kubelet's image size counts every layer (compressed), the random one included.
    assert pull.size_bytes is None or pull.size_bytes >= layer.size, (pull, layer)
    return {
        "prepull": prepull,
        "target": image,
        "not_ready_s": window.not_ready_s,
        "ready_flips": window.flips,
        "pull_s": pull.seconds,  # None: the kubelet's event for the pod was dropped
        "pulled_by": "prepull-pod" if prepull else "kubelet-for-the-pod",
        "image_bytes": pull.size_bytes,
        "random_layer_bytes": layer.size,
        "upgrade_s": round(took, 1),
        **{f"{k}_failed_so_far": v.summary()["failed"] + v.summary()["tcp_failed"] for k, v in loads.items()},
    }


def test_not_ready_window_with_registry_pulls_prepull_on_and_off(
    api: client.ApiClient, namespace: str, suite_release: release.Release, tmp_path: Path
) -> None:
    # One pod per mode, each upgraded twice: a slot that starts again an image it started after an
    # earlier upgrade, seconds after its last restart, meets the kubelet's crash-loop back-off (keyed by
    # container and image: kuberuntime GetBackoffKey, doBackOff) instead of a pull: another test's subject.
    endpoints = images.local_registry()
    assert endpoints is not None
    made: list[pulltarget.FreshTarget] = []
    report = []
    try:
        for prepull in (True, False):
            app = f"{APP}-{'on' if prepull else 'off'}"
            # Made (random bytes, pushed) before the load starts, so that work does not compete with it.
            targets = [pulltarget.fresh_target(endpoints, TARGET_BASE, tmp_path) for _ in range(UPGRADES)]
            made += targets
            with controller_prepull(api, suite_release, prepull):
                report += upgrades_under_load(api, namespace, app, prepull, targets)
    finally:
        # Off the node and out of the registry's index: each run adds UPGRADES * 2 random layers.
        for target in made:
            pulls.forget_image(target.image)
            pulltarget.drop_target(endpoints, target)
    assert len(report) == 2 * UPGRADES


def upgrades_under_load(
    api: client.ApiClient,
    namespace: str,
    app: str,
    prepull: bool,
    targets: list[pulltarget.FreshTarget],
) -> list[dict[str, Any]]:
    """A fresh pod of `app` behind a ClusterIP Service, upgraded to each target in turn under load
    through the Service and to the pod IP; one JSON line per upgrade, then the load totals."""
    [pod] = conftest.deploy_and_wait(api, namespace, app)
    name, pod_ip = pod["metadata"]["name"], pod["status"]["podIP"]
    # The pod pulled its images from the registry (nothing e2e is pre-imported any more); the private
    # targets need the pull secret the namespace's ServiceAccount handed it.
    assert {"name": images.PULL_SECRET} in pod["spec"].get("imagePullSecrets", [])
    service = kube.core(api).create_namespaced_service(namespace, service_manifest(app))
    cluster_ip = service.spec.cluster_ip
    kube.wait_until(f"Service {app} answers on {cluster_ip}", lambda: answers(cluster_ip), 60, interval=1.0)
    app_before = kube.container_status(pod, "app")
    loads = {"service": start_load_to(cluster_ip, 2000.0), "pod_ip": start_load_to(pod_ip, 2000.0)}
    report = []
    try:
        for target in targets:
            figures = measured_upgrade(
                api, namespace=namespace, name=name, target=target, prepull=prepull, loads=loads
            )
            print(json.dumps({"upgrade": figures}))
            report.append(figures)
    finally:
        summaries = {k: load.stop() for k, load in loads.items()}
    for path, summary in summaries.items():
        print(json.dumps({"load": path, "prepull": prepull, **summary}))
    for path, summary in summaries.items():
        assert summary["failed"] == 0, (path, summary["failures"])
        assert summary["requests"] > 100, path
        assert summary["tcp_echoes"] > 0, path
        assert_tcp_only_cut_at_parent_exit(loads[path], upgrades=len(report))
    final = kube.get_pod(api, namespace, name)
    app_after = kube.container_status(final, "app")
    assert app_after["containerID"] == app_before["containerID"] and app_after["restartCount"] == 0
    return report
