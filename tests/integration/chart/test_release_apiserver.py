"""helm install / upgrade / uninstall against a real kube-apiserver, with the webhook's and the controller's
own code writing what they write at run time, under the chart's RBAC (ServiceAccount tokens).

No node is needed: both Deployments run 0 replicas, and this test plays their API side with the real
code (`webhook.certs_k8s.reconcile`, `controller.leader.LeaderElector`). That proves the RBAC is
enough (and no more), that the objects the chart creates empty are usable, and that `helm upgrade` keeps
what those processes wrote. The webhooks are scoped to a namespace label nothing carries, so installing
this release never affects anything else on the cluster.
"""

import base64
import datetime
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes import config as kube_config
from prometheus_client import CollectorRegistry

from controller.budgetcache import BudgetCache
from controller.fleetcache import FleetCache
from controller.kube import Kube
from controller.leader import LeaderElector
from controller.metrics import ControllerMetrics
from controller.release_reconciler import ReleaseReconciler
from localcluster.helm import CHART, HelmError, run_helm
from releaseapi.release import GROUP, KIND, PLURAL, VERSION
from tests.integration.apiserver import reachable_kubeconfig
from tests.integration.chart import tokens
from tests.integration.controller.fakes import wait_until
from webhook.certs_k8s import KubernetesCertificates, reconcile
from webhook.config import WebhookConfig, parse_config
from webhook.release_source import ReleaseSource
from webhook.releasecache import ReleaseCache

pytestmark = pytest.mark.timeout(600)

# The README's release name, with a namespace name as long as its "hotupgrade-system": what users install.
RELEASE = "hotupgrade"
FULLNAME = f"{RELEASE}-sidecar-hotupgrade"
NAMESPACE = f"hu-chart-{secrets.token_hex(4)}"
# What a namespace holds before anything is installed into it.
NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
SETS = [
    "webhook.replicas=0",
    "controller.replicas=0",
    "admission.namespaceSelectorExpressions[0].key=hotupgrade.io/chart-test",
    "admission.namespaceSelectorExpressions[0].operator=Exists",
]


@pytest.fixture(scope="module")
def kubeconfig() -> str:
    return reachable_kubeconfig()


@pytest.fixture(scope="module")
def admin(kubeconfig: str) -> client.ApiClient:
    api: client.ApiClient = kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    return api


def api_of(kind: str, api: client.ApiClient) -> Any:
    """`client.<kind>(api)`, typed Any: the tests send and read plain JSON-ish values."""
    return getattr(client, kind)(api)


def helm(kubeconfig: str, *args: str) -> str:
    return run_helm([*args, "--kubeconfig", kubeconfig, "--namespace", NAMESPACE]).stdout


@pytest.fixture(scope="module")
def release(kubeconfig: str, admin: client.ApiClient) -> Iterator[str]:
    sets = [arg for s in SETS for arg in ("--set", s)]
    try:
        helm(kubeconfig, "install", RELEASE, str(CHART), "--create-namespace", *sets)
        yield RELEASE
    finally:
        try:
            helm(kubeconfig, "uninstall", RELEASE)
        except HelmError as exc:
            if "not found" not in str(exc):
                raise
        api_of("CoreV1Api", admin).delete_namespace(NAMESPACE)


def as_service_account(admin: client.ApiClient, name: str) -> client.ApiClient:
    """A client authenticated with a fresh token of the chart's ServiceAccount `name`."""
    return tokens.as_service_account(admin, name, NAMESPACE)


def deployed_config(admin: client.ApiClient) -> WebhookConfig:
    """The webhook's config, as the chart stored it in the cluster."""
    cm = api_of("CoreV1Api", admin).read_namespaced_config_map(f"{FULLNAME}-config", NAMESPACE)
    return parse_config(yaml.safe_load(cm.data["config.yaml"]))


def ca_bundles(admin: client.ApiClient) -> list[str | None]:
    adm = api_of("AdmissionregistrationV1Api", admin)
    hooks = [
        *adm.read_mutating_webhook_configuration(FULLNAME).webhooks,
        *adm.read_validating_webhook_configuration(FULLNAME).webhooks,
    ]
    return [hook.client_config.ca_bundle for hook in hooks]


def secret_data(admin: client.ApiClient) -> dict[str, bytes]:
    secret = api_of("CoreV1Api", admin).read_namespaced_secret(f"{FULLNAME}-tls", NAMESPACE)
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


def lease_holder(admin: client.ApiClient) -> str | None:
    lease = api_of("CoordinationV1Api", admin).read_namespaced_lease(
        f"{FULLNAME}-controller-leader", NAMESPACE
    )
    holder: str | None = lease.spec.holder_identity if lease.spec else None
    return holder


def forbidden(call: Any, *args: Any) -> bool:
    try:
        call(*args)
    except client.ApiException as exc:
        return bool(exc.status == 403)
    return False


def test_webhook_certificates_work_under_the_charts_rbac(admin: client.ApiClient, release: str) -> None:
    assert ca_bundles(admin) == [None, None, None] and secret_data(admin) == {}
    webhook = as_service_account(admin, f"{FULLNAME}-webhook")
    config = deployed_config(admin)
    store = KubernetesCertificates(webhook, config.certificates, failure_policy=config.failure_policy)
    decided = reconcile(store, now=datetime.datetime.now(datetime.UTC))
    assert decided.action != "keep"  # the chart's empty Secret read as "no certificate yet"
    stored = secret_data(admin)
    assert {"ca.crt", "ca.key", "tls.crt", "tls.key"} <= set(stored)
    for bundle in ca_bundles(admin):
        assert bundle is not None and stored["ca.crt"] in base64.b64decode(bundle)
    # A second round keeps everything (and needs no more rights).
    assert reconcile(store, now=datetime.datetime.now(datetime.UTC)).action == "keep"
    # ... and the webhook can do nothing beyond its own objects.
    core, adm = api_of("CoreV1Api", webhook), api_of("AdmissionregistrationV1Api", webhook)
    assert forbidden(core.read_namespaced_secret, "some-other-secret", NAMESPACE)
    assert forbidden(core.create_namespaced_secret, NAMESPACE, {"metadata": {"name": "x"}})
    assert forbidden(core.list_namespaced_secret, NAMESPACE)
    assert forbidden(adm.read_mutating_webhook_configuration, "someone-elses-webhook")
    # It may watch its own configurations by name (to repair them), and list no others.
    mine = adm.list_mutating_webhook_configuration(field_selector=f"metadata.name={FULLNAME}")
    assert [c.metadata.name for c in mine.items] == [FULLNAME]
    # ... and watch them from the listed resourceVersion (webhook.certs_k8s.ConfigurationWatch).
    api_of("AdmissionregistrationV1Api", admin).patch_mutating_webhook_configuration(
        FULLNAME, {"metadata": {"annotations": {"hotupgrade.io/chart-test": "watched"}}}
    )
    events = watch.Watch().stream(  # type: ignore[no-untyped-call]
        adm.list_mutating_webhook_configuration,
        field_selector=f"metadata.name={FULLNAME}",
        resource_version=mine.metadata.resource_version,
        timeout_seconds=10,
    )
    first = next(events)
    assert first["type"] == "MODIFIED", first
    assert first["object"].metadata.annotations["hotupgrade.io/chart-test"] == "watched"
    events.close()
    assert forbidden(adm.list_validating_webhook_configuration)
    assert forbidden(core.list_namespaced_pod, NAMESPACE)


def test_controller_leads_under_the_charts_rbac(admin: client.ApiClient, release: str) -> None:
    controller = as_service_account(admin, f"{FULLNAME}-controller")
    elector = LeaderElector(
        Kube(controller),
        name=f"{FULLNAME}-controller-leader",
        namespace=NAMESPACE,
        identity="controller-0",
        metrics=ControllerMetrics(CollectorRegistry()),
    )
    assert elector.try_acquire_or_renew()  # the chart's empty Lease reads as released
    assert lease_holder(admin) == "controller-0"
    assert elector.try_acquire_or_renew()  # renew
    core, coordination = api_of("CoreV1Api", controller), api_of("CoordinationV1Api", controller)
    core.list_pod_for_all_namespaces(limit=1)  # watching pods cluster-wide is allowed
    assert forbidden(coordination.read_namespaced_lease, "another-lease", NAMESPACE)
    assert forbidden(coordination.create_namespaced_lease, NAMESPACE, {"metadata": {"name": "x"}, "spec": {}})
    assert forbidden(core.list_namespaced_secret, NAMESPACE)
    assert forbidden(core.delete_namespaced_service_account, "any", NAMESPACE)
    assert not forbidden(core.delete_namespaced_pod, "any", NAMESPACE)  # prePull is on: 404, not 403
    assert not forbidden(core.read_node, "any") and forbidden(core.list_node)  # nodes: get only


def test_the_release_loop_works_under_the_charts_rbac(admin: client.ApiClient, release: str) -> None:
    """The controller's caches list and watch (PodDisruptionBudgets too), its reconcile writes status and
    posts an Event, with the chart's RBAC; it may not create, edit or delete releases (users and GitOps
    do)."""
    kube = Kube(as_service_account(admin, f"{FULLNAME}-controller"))
    custom = api_of("CustomObjectsApi", admin)
    name = f"hu-chart-{secrets.token_hex(4)}"
    nothing = {"matchLabels": {"hotupgrade.io/chart-test-selects-nothing": "true"}}
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": nothing,
            "selector": {},
            "image": "registry.local/hotupgrade-sidecar:2",
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, doc)
    stop = threading.Event()
    budgets = BudgetCache(kube, namespaces=[NAMESPACE], watch_timeout=30)
    try:
        fleet = FleetCache(kube, enqueue=lambda _: None, stop=stop, namespaces=[NAMESPACE], watch_timeout=30)
        fleet.start()
        assert fleet.wait_synced(timeout=30), "releases, namespaces and pods listed"
        # The PodDisruptionBudget gate's caches list, and may watch from the list's resourceVersion.
        budgets.start()
        assert budgets.synced(timeout=30), "PodDisruptionBudgets and pods listed"
        _, version = kube.list_pdbs(NAMESPACE)
        watched = list(kube.watch_pdbs(NAMESPACE, resource_version=version, timeout_seconds=1))
        assert [e for e in watched if e.get("type") == "ERROR"] == [], watched  # 403 would raise
        reconciler = ReleaseReconciler(
            kube, fleet, metrics=ControllerMetrics(CollectorRegistry()), budgets=budgets
        )
        assert not reconciler.reconcile(name).done  # a requeue-after of the resync, not an error's
        written = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        complete = [c for c in written["status"]["conditions"] if c["type"] == "Complete"]
        assert [(c["status"], c["reason"]) for c in complete] == [("True", "NoMatchedPods")]
        mine = api_of("CustomObjectsApi", kube.api_client)
        assert forbidden(
            mine.create_cluster_custom_object, GROUP, VERSION, PLURAL, {**doc, "metadata": {"name": "x"}}
        )
        assert forbidden(
            mine.patch_cluster_custom_object, GROUP, VERSION, PLURAL, name, {"spec": {"priority": 1}}
        )
        assert forbidden(mine.delete_cluster_custom_object, GROUP, VERSION, PLURAL, name)
    finally:
        stop.set()
        budgets.close()
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


SIDECAR = "registry.local/hotupgrade-sidecar"


def test_the_webhook_release_cache_works_under_the_charts_rbac(
    admin: client.ApiClient, release: str, tmp_path: Path
) -> None:
    """`hotupgrade-webhook releases` lists and watches SidecarReleases and namespaces with the webhook's
    token (every cert mode has that ClusterRole), and may not write releases."""
    api = as_service_account(admin, f"{FULLNAME}-webhook")
    custom = api_of("CustomObjectsApi", admin)
    name = f"hu-chart-cache-{secrets.token_hex(4)}"
    doc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"hotupgrade.io/chart-test-selects-nothing": "true"}},
            "image": "registry.local/hotupgrade-sidecar:2",
        },
    }
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, doc)
    stop = threading.Event()
    out = tmp_path / "releases.json"
    cache = ReleaseCache(api, out, stop=stop, watch_timeout=30)
    thread = threading.Thread(target=cache.run, daemon=True)
    thread.start()
    try:
        source = ReleaseSource(out)

        def listed(image: str) -> bool:
            snapshot = source.current()
            return snapshot is not None and any(
                r.name == name and r.spec.image == image for r in snapshot.releases
            )

        wait_until(
            lambda: listed("registry.local/hotupgrade-sidecar:2"), timeout=30, what="the first snapshot"
        )
        snapshot = source.current()
        assert snapshot is not None and NAMESPACE in snapshot.namespaces  # namespaces listed too
        # The watch (not a relist) brings an edit.
        custom.patch_cluster_custom_object(
            GROUP,
            VERSION,
            PLURAL,
            name,
            {"spec": {"image": "registry.local/hotupgrade-sidecar:3"}},
            _content_type="application/merge-patch+json",
        )
        wait_until(lambda: listed(f"{SIDECAR}:3"), timeout=30, what="the watched edit")
        mine = api_of("CustomObjectsApi", api)
        assert forbidden(mine.delete_cluster_custom_object, GROUP, VERSION, PLURAL, name)
        assert forbidden(api_of("CoreV1Api", api).list_pod_for_all_namespaces)
    finally:
        stop.set()
        thread.join(timeout=10)
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def test_helm_upgrade_keeps_what_the_processes_wrote(
    kubeconfig: str, admin: client.ApiClient, release: str
) -> None:
    bundles, stored, holder = ca_bundles(admin), secret_data(admin), lease_holder(admin)
    assert all(bundles) and stored and holder  # the earlier tests wrote them
    sets = [arg for s in [*SETS, "injection.drainSeconds=12"] for arg in ("--set", s)]
    helm(kubeconfig, "upgrade", RELEASE, str(CHART), *sets)
    assert deployed_config(admin).drain_seconds == 12
    assert ca_bundles(admin) == bundles
    assert secret_data(admin) == stored
    assert lease_holder(admin) == holder


def _namespace_objects(admin: client.ApiClient) -> set[tuple[str, str]]:
    core, apps, rbac = (
        api_of("CoreV1Api", admin),
        api_of("AppsV1Api", admin),
        api_of("RbacAuthorizationV1Api", admin),
    )
    listings: list[tuple[str, Any]] = [
        ("ConfigMap", core.list_namespaced_config_map),
        ("Secret", core.list_namespaced_secret),
        ("ServiceAccount", core.list_namespaced_service_account),
        ("Service", core.list_namespaced_service),
        ("Deployment", apps.list_namespaced_deployment),
        ("Lease", api_of("CoordinationV1Api", admin).list_namespaced_lease),
        ("Role", rbac.list_namespaced_role),
        ("RoleBinding", rbac.list_namespaced_role_binding),
        ("PodDisruptionBudget", api_of("PolicyV1Api", admin).list_namespaced_pod_disruption_budget),
    ]
    found: set[tuple[str, str]] = set()
    for kind, list_fn in listings:
        found |= {(kind, item.metadata.name) for item in list_fn(NAMESPACE).items}
    return found - NAMESPACE_DEFAULTS


def _cluster_objects(admin: client.ApiClient) -> set[tuple[str, str]]:
    adm, rbac = api_of("AdmissionregistrationV1Api", admin), api_of("RbacAuthorizationV1Api", admin)
    found: set[tuple[str, str]] = set()
    for kind, list_fn in (
        ("MutatingWebhookConfiguration", adm.list_mutating_webhook_configuration),
        ("ValidatingWebhookConfiguration", adm.list_validating_webhook_configuration),
        ("ClusterRole", rbac.list_cluster_role),
        ("ClusterRoleBinding", rbac.list_cluster_role_binding),
    ):
        found |= {
            (kind, item.metadata.name) for item in list_fn().items if item.metadata.name.startswith(FULLNAME)
        }
    return found


def test_uninstall_leaves_nothing_behind(kubeconfig: str, admin: client.ApiClient, release: str) -> None:
    before_cluster, before_namespace = _cluster_objects(admin), _namespace_objects(admin)
    # 2 webhook configurations; ClusterRoles + Bindings: the controller, the webhook, its release cache.
    assert len(before_cluster) == 8
    # Including what the processes rewrote (the Secret and the Lease lost Helm's labels on the way).
    assert {("Secret", f"{FULLNAME}-tls"), ("Lease", f"{FULLNAME}-controller-leader")} <= before_namespace
    helm(kubeconfig, "uninstall", RELEASE, "--wait")
    assert _cluster_objects(admin) == set()
    assert _namespace_objects(admin) == set()
