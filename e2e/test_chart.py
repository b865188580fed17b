"""The Helm chart on a real cluster: install, inject and guard through the in-cluster webhook, upgrade a
sidecar through the in-cluster controller, `helm upgrade` the release, `helm uninstall` it, nothing left.

Runs the project's pinned helm (make helm). Uses a namespace *without* the injection label and opts the
demo pods in by pod label, so only the chart's webhook (never the suite's host webhook, which selects on
the namespace label) can have injected them; and scopes the release to that namespace, so it never
acts on other tests' pods.
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

from e2e import conftest, kube, upgrade
from localcluster.helm import CHART, HelmError, run_helm
from webhook import contract

pytestmark = pytest.mark.timeout(900)

# Overridable, for sharing a cluster with another run of this test.
RELEASE = os.environ.get("E2E_CHART_RELEASE", "hu-chart")
RELEASE_NAMESPACE = os.environ.get("E2E_CHART_NAMESPACE", "hotupgrade-chart-e2e")
FULLNAME = f"{RELEASE}-sidecar-hotupgrade"
HELM_WAIT = "4m"
HELM_TIMEOUT = 5 * 60.0  # helm's own --timeout, plus its time to report
# No `image` value: the release runs the chart's default image (values.yaml repository, tag = appVersion),
# which localcluster/imagebuilder builds and imports into the cluster, so the test proves the default works.
DEFAULT_IMAGE = "sidecar-hotupgrade/webhook:" + str(
    yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
)
VALUES: dict[str, Any] = {
    "injection": {
        "sidecarImage": conftest.SIDECAR_IMAGES[0],
        "emptyImage": conftest.EMPTY_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "drainSeconds": conftest.DRAIN_SECONDS,
        "parentShutdownSeconds": conftest.PARENT_SHUTDOWN_SECONDS,
        "ports": {"upstream": 8080, "tcpUpstream": 9000},
    },
    "controller": {
        "allowImagePrefixes": ["sidecar-hotupgrade/"],
        "stepTimeoutSeconds": 180,
        "drainGraceSeconds": 60,
        "pollIntervalSeconds": 0.5,
    },
}
# The release only sees this run's app namespace: its webhooks through an extra namespace selector, its
# controller through --namespace. So it never touches pods of other tests, whatever runs beside it.
APP_NAMESPACE = f"hu-chart-app-{uuid.uuid4().hex[:6]}"
SCOPE_LABEL = "e2e.hotupgrade.io/chart"
VALUES["admission"] = {
    "namespaceSelectorExpressions": [{"key": SCOPE_LABEL, "operator": "In", "values": [RELEASE]}]
}
VALUES["controller"]["watchNamespaces"] = [APP_NAMESPACE]
# What a namespace holds before anything is installed into it.
NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}


def helm(*args: str) -> str:
    return run_helm(list(args), timeout=HELM_TIMEOUT).stdout


def installed() -> bool:
    """Whether the release exists in any state (deployed, failed, pending-install...)."""
    out = helm("list", "--all", "--namespace", RELEASE_NAMESPACE, "--filter", f"^{RELEASE}$", "--short")
    return RELEASE in out.split()


def diagnose(api: client.ApiClient) -> str:
    """Pod states and recent events of the release namespace, for a failed install or upgrade."""
    core = kube.core(api)
    lines = [
        f"pod {p.metadata.name}: {p.status.phase} "
        + "; ".join(
            f"{c.name} ready={c.ready} restarts={c.restart_count}" for c in p.status.container_statuses or []
        )
        for p in core.list_namespaced_pod(RELEASE_NAMESPACE).items
    ]
    events = sorted(core.list_namespaced_event(RELEASE_NAMESPACE).items, key=lambda e: str(e.last_timestamp))
    lines += [f"event {e.reason} {e.involved_object.name}: {e.message}"[:300] for e in events[-20:]]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def values_file(workdir: Path) -> Path:
    path = workdir / "chart-values.yaml"
    path.write_text(yaml.safe_dump(VALUES))
    return path


@pytest.fixture(scope="module")
def release(api: client.ApiClient, values_file: Path) -> Iterator[str]:
    """The chart installed (helm --wait: every Deployment available); uninstalled if a test did not."""
    try:
        try:
            helm(
                "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--create-namespace",
                "--values", str(values_file), "--wait", "--timeout", HELM_WAIT,
            )  # fmt: skip
        except HelmError as exc:
            raise AssertionError(f"{exc}\n{diagnose(api)}") from None
        yield RELEASE
    finally:
        if installed():
            helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", HELM_WAIT)
        try:
            kube.core(api).delete_namespace(RELEASE_NAMESPACE)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def app_namespace(api: client.ApiClient, release: str) -> Iterator[str]:
    """A namespace with no injection label (pods opt in one by one), in the release's scope."""
    name = APP_NAMESPACE
    core = kube.core(api)
    core.create_namespace({"metadata": {"name": name, "labels": {SCOPE_LABEL: RELEASE}}})
    kube.wait_until("default ServiceAccount", lambda: conftest.has_default_sa(core, name), 60)
    try:
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
    secret = kube.core(api).read_namespaced_secret(f"{FULLNAME}-tls", RELEASE_NAMESPACE)
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


OPTED_IN = {contract.LABEL_POD_INJECT: "true"}


def test_install_runs_webhook_and_controller_in_cluster(api: client.ApiClient, release: str) -> None:
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
    lease_name = f"{FULLNAME}-controller-leader"
    coordination = client.CoordinationV1Api(api)

    def holder() -> str | None:
        lease = coordination.read_namespaced_lease(lease_name, RELEASE_NAMESPACE)
        return lease.spec.holder_identity if lease.spec else None

    leader = kube.wait_until("a controller leads", holder, 120, interval=2.0)
    controllers = kube.list_pods(api, RELEASE_NAMESPACE, "app.kubernetes.io/component=controller")
    assert leader in {p["metadata"]["name"] for p in controllers}
    # Every container of both components (webhook, certs, controller) runs the chart's default image.
    pods = kube.list_pods(api, RELEASE_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
    containers = [c for p in pods for c in [*p["spec"].get("initContainers", []), *p["spec"]["containers"]]]
    images = {c["image"] for c in containers}
    assert images == {DEFAULT_IMAGE}, images


def test_in_cluster_webhook_injects_and_guards(
    api: client.ApiClient, release: str, app_namespace: str
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
    api: client.ApiClient, release: str, app_namespace: str
) -> None:
    [pod] = kube.list_pods(api, app_namespace, "app=chart-demo")
    name = pod["metadata"]["name"]
    before = upgrade.status_of(pod)
    target = conftest.SIDECAR_IMAGES[1]
    upgrade.annotate_target(api, app_namespace, name, target)
    outcome = upgrade.wait_controller_outcome(api, app_namespace, name, target, conftest.UPGRADE_TIMEOUT)
    assert outcome.phase == "Completed", outcome.message
    after = upgrade.status_of(outcome.pod)
    assert after.active == before.standby and after.sidecar_image == target
    assert kube.container_image(outcome.pod, after.active) == target
    assert kube.container_image(outcome.pod, after.standby) == conftest.EMPTY_IMAGE
    assert kube.container_status(outcome.pod, "app")["restartCount"] == 0


def test_helm_upgrade_keeps_certificates_and_applies_values(
    api: client.ApiClient, release: str, app_namespace: str, values_file: Path
) -> None:
    bundles, stored = ca_bundles(api), tls_secret(api)
    try:
        helm(
            "upgrade", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--values", str(values_file),
            "--set", "webhook.replicas=1", "--set", "injection.drainSeconds=6",
            "--wait", "--timeout", HELM_WAIT,
        )  # fmt: skip
    except HelmError as exc:
        raise AssertionError(f"{exc}\n{diagnose(api)}") from None
    # Helm's three-way merge left alone what the webhook wrote at run time.
    assert ca_bundles(api) == bundles
    assert tls_secret(api) == stored
    cm = kube.core(api).read_namespaced_config_map(f"{FULLNAME}-config", RELEASE_NAMESPACE)
    assert yaml.safe_load(cm.data["config.yaml"])["drainSeconds"] == 6
    webhook = kube.apps(api).read_namespaced_deployment(f"{FULLNAME}-webhook", RELEASE_NAMESPACE)
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
        found |= {(kind, item.metadata.name) for item in list_fn(RELEASE_NAMESPACE).items}
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


def test_uninstall_leaves_nothing_behind(api: client.ApiClient, release: str, app_namespace: str) -> None:
    assert _cluster_objects(api) and _namespace_objects(api)  # the checks below see real objects
    helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, "--wait", "--timeout", HELM_WAIT)
    assert _cluster_objects(api) == set()
    # Pods and ReplicaSets go through garbage collection after their Deployment: give them time.
    kube.wait_until("release namespace empty", lambda: not _namespace_objects(api) or None, 180, interval=2.0)
    # The cluster no longer calls the webhook: an opted-in pod is created, uninjected, not rejected.
    [pod] = conftest.deploy_and_wait(api, app_namespace, "chart-gone", labels=OPTED_IN)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
