"""The Helm chart on a real cluster: install, inject and guard through the in-cluster webhook, upgrade a
sidecar through the in-cluster controller, `helm upgrade` the release, `helm uninstall` it, nothing left.

Every other e2e test runs against the session release of e2e/conftest.py; this module installs a second
release of its own, because it upgrades and uninstalls it. The two never see each other's pods: each
release's webhooks select namespaces labelled with its name (clusterkit/release.py) and each controller
watches only its own namespaces. Pods here opt in by pod label in a namespace without the injection label, so
only the chart's pod-label entry can have injected them.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from clusterkit import kube, release, upgrade
from controller.record import Phase
from e2e import conftest
from webhook import contract

pytestmark = pytest.mark.timeout(900)

# Overridable, for sharing a cluster with another run of this test.
RELEASE = release.Release(
    os.environ.get("E2E_CHART_RELEASE", "hu-chart"),
    os.environ.get("E2E_CHART_NAMESPACE", "hotupgrade-chart-e2e"),
)
FULLNAME = RELEASE.fullname
APP_NAMESPACE = f"hu-chart-app-{uuid.uuid4().hex[:6]}"
# No `image` value: the release runs the chart's default image. Its controller watches only this
# run's app namespace, so it never touches pods of other tests, whatever runs beside it.
VALUES = conftest.chart_values(RELEASE, watch_namespaces=(APP_NAMESPACE,))
# What a namespace holds before anything is installed into it.
NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


@pytest.fixture(scope="module")
def values_file(workdir: Path) -> Path:
    path = workdir / "chart-values.yaml"
    path.write_text(yaml.safe_dump(VALUES))
    return path


@pytest.fixture(scope="module")
def release_name(api: client.ApiClient, values_file: Path) -> Iterator[str]:
    """The chart installed (helm --wait: every Deployment available); uninstalled if a test did not."""
    try:
        release.install(api, RELEASE, values_file)
        yield RELEASE.name
    finally:
        release.uninstall(api, RELEASE)


@pytest.fixture(scope="module")
def app_namespace(api: client.ApiClient, release_name: str) -> Iterator[str]:
    """A namespace with no injection label (pods opt in one by one), in the release's scope."""
    name = APP_NAMESPACE
    core = kube.core(api)
    core.create_namespace({"metadata": {"name": name, "labels": RELEASE.scope}})
    kube.wait_until("default ServiceAccount", lambda: conftest.has_default_sa(core, name), 60)
    try:
        conftest.grant_pulls(core, name)
        yield name
    finally:
        core.delete_namespace(name, grace_period_seconds=0)


def ca_bundles(api: client.ApiClient) -> list[str | None]:
    """caBundle of every webhook entry of the release's two configurations."""
    adm = kube.admission(api)
    bundles = []
    for config in (
        adm.read_mutating_webhook_configuration(FULLNAME),
        adm.read_validating_webhook_configuration(FULLNAME),
    ):
        bundles += [hook.client_config.ca_bundle for hook in config.webhooks]
    return bundles


def tls_secret(api: client.ApiClient) -> dict[str, bytes]:
    secret = kube.core(api).read_namespaced_secret(f"{FULLNAME}-tls", RELEASE.namespace)
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


OPTED_IN = {contract.LABEL_POD_INJECT: "true"}


def test_install_runs_webhook_and_controller_in_cluster(api: client.ApiClient, release_name: str) -> None:
    # Self-signed mode: the webhook's certs containers filled the Secret and patched every caBundle.
    def patched() -> list[str] | None:
        found = ca_bundles(api)
        return [b for b in found if b] if all(found) else None

    bundles = kube.wait_until("caBundle in every webhook", patched, 180, interval=2.0)
    stored = tls_secret(api)
    assert {"ca.crt", "ca.key", "tls.crt", "tls.key"} <= set(stored)
    for bundle in bundles:
        assert stored["ca.crt"] in base64.b64decode(bundle)
    # One controller replica leads through the chart's Lease.
    leader = kube.wait_until("a controller leads", lambda: release.leader(api, RELEASE), 120, interval=2.0)
    assert leader in release.controller_pods(api, RELEASE)
    # Every container of both components (webhook, certs, controller) runs the chart's default image.
    pods = kube.list_pods(api, RELEASE.namespace, f"app.kubernetes.io/instance={RELEASE.name}")
    containers = [c for p in pods for c in [*p["spec"].get("initContainers", []), *p["spec"]["containers"]]]
    images = {c["image"] for c in containers}
    assert images == {release.DEFAULT_IMAGE}, images


def test_in_cluster_webhook_injects_and_guards(
    api: client.ApiClient, release_name: str, app_namespace: str
) -> None:
    [pod] = conftest.deploy_and_wait(api, app_namespace, "chart-demo", labels=OPTED_IN)
    status = upgrade.status_of(pod)
    assert kube.container_image(pod, status.active) == conftest.SIDECAR_IMAGES[0]
    assert kube.container_image(pod, status.standby) == conftest.EMPTY_IMAGE
    # Not opted in (unlabelled pod in an unlabelled namespace): untouched.
    [plain] = conftest.deploy_and_wait(api, app_namespace, "chart-plain")
    assert [c["name"] for c in plain["spec"]["containers"]] == ["app"]
    # The guard: a direct edit of the active sidecar's image is denied, even for cluster-admin.
    ops = upgrade.set_image_ops(pod, status.active, conftest.SIDECAR_IMAGES[0], conftest.SIDECAR_IMAGES[1])
    with pytest.raises(client.ApiException) as denied:
        upgrade.json_patch(api, app_namespace, pod["metadata"]["name"], ops)
    assert denied.value.status in (400, 403), denied.value
    assert "guard.hotupgrade.io" in str(denied.value.body), denied.value.body


def test_in_cluster_controller_upgrades_a_sidecar(
    api: client.ApiClient, release_name: str, app_namespace: str
) -> None:
    [pod] = kube.list_pods(api, app_namespace, "app=chart-demo")
    name = pod["metadata"]["name"]
    before = upgrade.status_of(pod)
    target = conftest.SIDECAR_IMAGES[1]
    outcome = upgrade.upgrade(api, app_namespace, name, target, conftest.UPGRADE_TIMEOUT)
    assert outcome.phase == Phase.COMPLETED, outcome.message
    after = upgrade.status_of(outcome.pod)
    assert after.active == before.standby and after.sidecar_image == target
    assert kube.container_image(outcome.pod, after.active) == target
    assert kube.container_image(outcome.pod, after.standby) == conftest.EMPTY_IMAGE
    assert kube.container_status(outcome.pod, "app")["restartCount"] == 0


def test_helm_upgrade_keeps_certificates_and_applies_values(
    api: client.ApiClient, release_name: str, app_namespace: str, values_file: Path
) -> None:
    bundles, stored = ca_bundles(api), tls_secret(api)
    release.upgrade(
        api, RELEASE, values_file, "--set", "webhook.replicas=1", "--set", "injection.drainSeconds=6"
    )
    # Helm's three-way merge left alone what the webhook wrote at run time.
    assert ca_bundles(api) == bundles
    assert tls_secret(api) == stored
    cm = kube.core(api).read_namespaced_config_map(f"{FULLNAME}-config", RELEASE.namespace)
    assert yaml.safe_load(cm.data["config.yaml"])["drainSeconds"] == 6
    webhook = kube.apps(api).read_namespaced_deployment(f"{FULLNAME}-webhook", RELEASE.namespace)
    assert webhook.spec.replicas == 1
    # Still admitting after the upgrade.
    [pod] = conftest.deploy_and_wait(api, app_namespace, "chart-after", labels=OPTED_IN)
    assert contract.ANNOTATION_STATUS in pod["metadata"]["annotations"]


def _namespace_objects(api: client.ApiClient) -> set[tuple[str, str]]:
    core, apps_api = kube.core(api), kube.apps(api)
    found: set[tuple[str, str]] = set()
    listings: list[tuple[str, Any]] = [
        ("ConfigMap", core.list_namespaced_config_map),
        ("Secret", core.list_namespaced_secret),
        ("ServiceAccount", core.list_namespaced_service_account),
        ("Service", core.list_namespaced_service),
        ("Pod", core.list_namespaced_pod),
        ("Deployment", apps_api.list_namespaced_deployment),
        ("ReplicaSet", apps_api.list_namespaced_replica_set),
        ("Lease", client.CoordinationV1Api(api).list_namespaced_lease),
        ("Role", kube.rbac(api).list_namespaced_role),
        ("RoleBinding", kube.rbac(api).list_namespaced_role_binding),
        ("PodDisruptionBudget", client.PolicyV1Api(api).list_namespaced_pod_disruption_budget),
    ]
    for kind, list_fn in listings:
        found |= {(kind, item.metadata.name) for item in list_fn(RELEASE.namespace).items}
    return found - NAMESPACE_DEFAULTS


def _cluster_objects(api: client.ApiClient) -> set[tuple[str, str]]:
    adm, rbac_api = kube.admission(api), kube.rbac(api)
    found: set[tuple[str, str]] = set()
    for kind, list_fn in (
        ("MutatingWebhookConfiguration", adm.list_mutating_webhook_configuration),
        ("ValidatingWebhookConfiguration", adm.list_validating_webhook_configuration),
        ("ClusterRole", rbac_api.list_cluster_role),
        ("ClusterRoleBinding", rbac_api.list_cluster_role_binding),
    ):
        found |= {(kind, item.metadata.name) for item in list_fn().items if FULLNAME in item.metadata.name}
    return found


def test_uninstall_leaves_nothing_behind(
    api: client.ApiClient, release_name: str, app_namespace: str
) -> None:
    assert _cluster_objects(api) and _namespace_objects(api)  # the checks below see real objects
    release.helm(
        "uninstall", RELEASE.name, "--namespace", RELEASE.namespace, "--wait", "--timeout", release.HELM_WAIT
    )
    assert _cluster_objects(api) == set()
    # Pods and ReplicaSets go through garbage collection after their Deployment: give them time.
    kube.wait_until("release namespace empty", lambda: not _namespace_objects(api) or None, 180, interval=2.0)
    # The cluster no longer calls the webhook: an opted-in pod is created, uninjected, not rejected.
    [pod] = conftest.deploy_and_wait(api, app_namespace, "chart-gone", labels=OPTED_IN)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
