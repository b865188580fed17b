"""The pre-pull pod against the real kube-apiserver (PodSecurity and ResourceQuota admission) and the real
kubelet of the local cluster's node (cases/prepull-pod-created.json).

- In a namespace that enforces Pod Security `restricted`, the controller's pre-pull pod is admitted and
  carries the upgraded pod's imagePullSecrets and ServiceAccount; the old manifest (the case file) is
  refused by the same admission.
- A pre-pull pod the API server refuses (here: over quota) fails the upgrade at once, naming the
  refusal, instead of a PrePullTimeout minutes later.
- On the real node, the kubelet pulls and runs it as the non-root uid, and a pull that cannot succeed
  fails with the kubelet's own reason and message.
"""

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException
from prometheus_client import CollectorRegistry

from controller.actions import CreatePrePullPod, PullAs
from controller.agents import AgentClient
from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.observed import pre_pull_view
from controller.prepull import pre_pull_failure, pre_pull_pod_manifest, pulled
from controller.reconciler import Reconciler
from controller.record import Phase, Reason
from localcluster import registry
from localcluster.imagebuilder.builder import EMPTY_IMAGE
from tests.integration.controller.fakes import EMPTY, NEW, KubeletSim, wait_until
from tests.integration.controller.test_reconcile_apiserver import (
    POLICY,
    annotate,
    drive,
    event_reasons,
    image_of,
    phase_is,
    record_of,
    start_pre_pull,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CASE = Path(__file__).parents[2] / "unit" / "controller" / "cases" / "prepull-pod-created.json"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def api(kube: Kube) -> Any:
    """The typed client, untyped: raw dict bodies in, raw JSON out (`_preload_content=False`)."""
    return kube.core


def restrict(kube: Kube, namespace: str) -> None:
    body = {"metadata": {"labels": RESTRICTED}}
    api(kube).patch_namespace(namespace, body, _preload_content=False)


def service_account_with_pull_secret(kube: Kube, namespace: str) -> None:
    """A ServiceAccount `web` and the docker-registry Secret `regcred` a private registry needs."""
    auth = {"auths": {"registry.private.test": {"auth": "dXNlcjpwYXNz"}}}
    secret = {
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": json.dumps(auth)},
    }
    api(kube).create_namespaced_secret(namespace, secret, _preload_content=False)
    api(kube).create_namespaced_service_account(
        namespace, {"metadata": {"name": "web"}}, _preload_content=False
    )


def reconciler_for(kube: Kube) -> tuple[Reconciler, CollectorRegistry]:
    registry = CollectorRegistry()
    policy = replace(POLICY, pre_pull=True)
    return Reconciler(kube, AgentClient(timeout=2.0), policy, metrics=ControllerMetrics(registry)), registry


def test_in_a_restricted_namespace_the_pre_pull_pod_pulls_as_the_pod_and_is_admitted(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    restrict(kube, namespace)
    service_account_with_pull_secret(kube, namespace)
    node = f"hu-no-such-node-{namespace}"  # no kubelet: the test plays it for the pre-pull pod too
    sim.add_pod("web-0", node_name=node, restricted=True, service_account="web", pull_secrets=("regcred",))
    reconciler, registry = reconciler_for(kube)
    _, record, puller = start_pre_pull(reconciler, sim, "web-0")  # admitted by PodSecurity `restricted`
    assert record.pre_pull_pod is not None
    spec = puller["spec"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}] and spec["serviceAccountName"] == "web"
    assert spec["securityContext"]["runAsUser"] == 1337 and spec["automountServiceAccountToken"] is False
    assert puller["metadata"]["labels"]["hotupgrade.io/inject"] == "false"
    sim.pre_pull_succeeded(record.pre_pull_pod)
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED))
    assert image_of(pod, "hotupgrade-b") == NEW and image_of(pod, "hotupgrade-a") == EMPTY
    assert kube.get_pod(namespace, record.pre_pull_pod) is None
    planned = json.loads(pod["metadata"]["annotations"]["hotupgrade.io/planned-restarts"])
    restarts = {s["name"]: s["restartCount"] for s in pod["status"]["containerStatuses"]}
    assert planned == {"hotupgrade-a": 1, "hotupgrade-b": 1} == {c: restarts[c] for c in planned}
    for container in ("hotupgrade-a", "hotupgrade-b"):
        labels = {"namespace": namespace, "container": container}
        assert (
            registry.get_sample_value("hotupgrade_controller_planned_container_restarts_total", labels) == 1
        )


def test_the_old_pre_pull_manifest_is_refused_by_restricted_and_ours_is_not(
    kube: Kube, namespace: str
) -> None:
    restrict(kube, namespace)
    case = json.loads(CASE.read_text())
    case["metadata"]["namespace"] = namespace
    del case["metadata"]["ownerReferences"]
    with pytest.raises(ApiException) as refused:
        api(kube).create_namespaced_pod(namespace, case, dry_run="All", _preload_content=False)
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body)
    action = CreatePrePullPod(
        pod_name=case["metadata"]["name"],
        node_name=case["spec"]["nodeName"],
        image=case["spec"]["containers"][0]["image"],
        record=None,
        requeue_after=1,
        pull_as=PullAs(image_pull_secrets=("regcred",)),
    )
    ours = pre_pull_pod_manifest(action, namespace=namespace, owner={"name": "web-1", "uid": "u"})
    del ours["metadata"]["ownerReferences"]
    api(kube).create_namespaced_pod(namespace, ours, dry_run="All", _preload_content=False)


def test_a_pre_pull_pod_refused_by_the_api_server_fails_the_upgrade_at_once(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0", node_name=f"hu-no-such-node-{namespace}")
    quota = {"metadata": {"name": "one-pod"}, "spec": {"hard": {"pods": "1"}}}
    api(kube).create_namespaced_resource_quota(namespace, quota, _preload_content=False)

    def counted() -> bool:
        raw = api(kube).read_namespaced_resource_quota("one-pod", namespace, _preload_content=False)
        return bool(json.loads(raw.data).get("status", {}).get("used", {}).get("pods") == "1")

    wait_until(counted, timeout=60, what="the quota controller to count the pod")
    reconciler, _ = reconciler_for(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    started = time.monotonic()
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.FAILED), timeout=15)
    record = record_of(pod)
    assert record is not None and record.reason is Reason.PRE_PULL_FAILED
    assert "refused" in record.message and "exceeded quota: one-pod" in record.message
    assert time.monotonic() - started < 15 < POLICY.step_timeout + 1, "at once, not after the step timeout"
    assert image_of(pod, "hotupgrade-b") == EMPTY, "the standby was never touched"
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeStarted", "UpgradeFailed"]


# --- the real kubelet ---------------------------------------------------------------------------


@pytest.fixture
def node(kube: Kube) -> str:
    """A Ready node with a kubelet (the local cluster's): the pre-pull pods below really run."""
    nodes = json.loads(api(kube).list_node(_preload_content=False).data)["items"]
    for item in nodes:
        conditions = item.get("status", {}).get("conditions") or []
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return str(item["metadata"]["name"])
    pytest.skip("no Ready node: `make cluster-up` starts one (the API server alone is not enough)")


def present_image(kube: Kube, node: str) -> str:
    """An image with /bin/sh the node can get: the project's empty image as the local cluster's registry
    serves it (cluster-up pushes it; the kubelet pulls it), else (no registry) a copy imported on the node."""
    try:
        return registry.image_ref(registry.load_endpoints(), EMPTY_IMAGE)
    except FileNotFoundError:
        pass
    item = json.loads(api(kube).read_node(node, _preload_content=False).data)
    for image in item.get("status", {}).get("images") or []:
        for name in image.get("names") or []:
            if "sidecar-hotupgrade/empty:" in name:
                return str(name)
    pytest.fail(f"node {node} has no sidecar-hotupgrade/empty image and no registry runs: `make cluster-up`")


@pytest.fixture
def owner(kube: Kube, namespace: str) -> Iterator[dict[str, str]]:
    """A pod for the pre-pull pods to be owned by (an ownerReference to a missing pod gets them collected)."""
    sim = KubeletSim(kube, namespace)
    sim.add_pod(f"owner-{secrets.token_hex(2)}", restricted=True)
    pod = kube.get_pod(namespace, next(iter(sim.agents)))
    assert pod is not None
    yield {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
    sim.close()


def run_pre_pull(kube: Kube, namespace: str, node: str, image: str, owner: dict[str, str]) -> str:
    name = f"hotupgrade-prepull-{secrets.token_hex(4)}"
    action = CreatePrePullPod(
        pod_name=name,
        node_name=node,
        image=image,
        record=None,
        requeue_after=1,
        pull_as=PullAs(
            service_account="web", image_pull_secrets=("regcred",), run_as_user=1337, run_as_group=1337
        ),
    )
    kube.create_pod(namespace, pre_pull_pod_manifest(action, namespace=namespace, owner=owner))
    return name


def view_of(kube: Kube, namespace: str, name: str) -> Any:
    return pre_pull_view(kube.get_pod(namespace, name))


def test_the_real_kubelet_pulls_and_runs_the_pre_pull_pod_as_non_root(
    kube: Kube, namespace: str, node: str, owner: dict[str, str]
) -> None:
    restrict(kube, namespace)
    service_account_with_pull_secret(kube, namespace)
    name = run_pre_pull(kube, namespace, node, present_image(kube, node), owner)

    def settled() -> Any:
        view = view_of(kube, namespace, name)
        return view if pulled(view) or pre_pull_failure(view) else None

    view = wait_until(settled, timeout=90, what="the kubelet to run the pre-pull pod")
    assert pulled(view) and pre_pull_failure(view) is None, view


def test_the_real_kubelets_pull_failure_is_named(
    kube: Kube, namespace: str, node: str, owner: dict[str, str]
) -> None:
    restrict(kube, namespace)
    service_account_with_pull_secret(kube, namespace)
    name = run_pre_pull(kube, namespace, node, "127.0.0.1:1/hotupgrade-test/absent:1", owner)
    failure = wait_until(
        lambda: pre_pull_failure(view_of(kube, namespace, name)),
        timeout=90,
        what="the kubelet to report the failed pull",
    )
    assert failure.startswith(("ErrImagePull: ", "ImagePullBackOff: ")), failure
    assert "127.0.0.1:1/hotupgrade-test/absent:1" in failure, "the kubelet's own message, not a timeout"
