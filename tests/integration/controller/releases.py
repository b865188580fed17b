"""Helpers of the SidecarRelease apiserver tests: the chart's CRD installed into the real API server,
releases created and read as raw JSON, and the release loop (caches + reconciler) on the test namespace."""

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from kubernetes import client
from prometheus_client import CollectorRegistry

from controller.budgetcache import BudgetCache
from controller.fleetcache import FleetCache
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.release_reconciler import ReleaseReconciler
from localcluster.helm import run_helm, template_args
from releaseapi.release import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.integration.controller.fakes import wait_until

CRD_NAME = f"{PLURAL}.{GROUP}"


def raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """`call(*args)` of the kubernetes client, answered as raw JSON."""
    found: dict[str, Any] = json.loads(call(*args, _preload_content=False, **kwargs).data)
    return found


def chart_crd() -> dict[str, Any]:
    """The CRD exactly as `helm template --include-crds` renders it from the chart."""
    text = run_helm([*template_args(), "--include-crds"]).stdout
    (crd,) = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "CustomResourceDefinition"]
    assert crd["metadata"]["name"] == CRD_NAME
    found: dict[str, Any] = crd
    return found


def install_crd(kube: Kube) -> dict[str, Any]:
    """Create the chart's CRD, or replace what is installed with it; wait until it is Established."""
    ext: Any = client.ApiextensionsV1Api(kube.api_client)
    crd = chart_crd()
    try:
        ext.create_custom_resource_definition(crd, _preload_content=False)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        for _ in range(5):  # another writer (helm install of the chart tests) may race us
            current = raw(ext.read_custom_resource_definition, CRD_NAME)
            body = {
                **crd,
                "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
            }
            try:
                ext.replace_custom_resource_definition(CRD_NAME, body, _preload_content=False)
                break
            except client.ApiException as again:
                if again.status != 409:
                    raise

    def established() -> dict[str, Any] | None:
        current: dict[str, Any] = raw(ext.read_custom_resource_definition, CRD_NAME)
        conditions = {c["type"]: c["status"] for c in (current.get("status") or {}).get("conditions") or []}
        return current if conditions.get("Established") == "True" else None

    served: dict[str, Any] = wait_until(established, timeout=60, what="the CRD to be Established")
    # The API server serves the new schema a moment after Established: wait until a list answers.
    wait_until(lambda: _lists(kube), timeout=30, what="sidecarreleases to be served")
    return served


def _lists(kube: Kube) -> bool:
    try:
        kube.list_releases()
    except Exception:
        return False
    return True


def release_doc(name: str, namespace: str, image: str, **spec: Any) -> dict[str, Any]:
    """A release of the `app: web` pods of `namespace` only (the cluster is shared)."""
    body: dict[str, Any] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "selector": {"matchLabels": {"app": "web"}},
        "image": image,
        **spec,
    }
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": body}


def create_release(kube: Kube, doc: dict[str, Any]) -> dict[str, Any]:
    return raw(kube.custom.create_cluster_custom_object, GROUP, VERSION, PLURAL, doc)


def merge_release(kube: Kube, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    """A user's edit of the release (kubectl patch --type merge)."""
    api: Any = kube.custom
    return raw(
        api.patch_cluster_custom_object,
        GROUP,
        VERSION,
        PLURAL,
        name,
        patch,
        _content_type="application/merge-patch+json",
    )


def delete_release(kube: Kube, name: str) -> None:
    try:
        kube.custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name, _preload_content=False)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def condition(raw: dict[str, Any], kind: str) -> tuple[str, str, str] | None:
    """(status, reason, message) of the release's condition `kind`."""
    for c in (raw.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return str(c["status"]), str(c["reason"]), str(c["message"])
    return None


def state(raw: dict[str, Any], kind: str) -> tuple[str, str]:
    """(status, reason) of the release's condition `kind`, which must be there."""
    found = condition(raw, kind)
    assert found is not None, f"no {kind} condition in {raw.get('status')}"
    return found[0], found[1]


def release_events(kube: Kube, name: str) -> list[dict[str, Any]]:
    """The controller's Events on the release, oldest first."""
    selector = f"involvedObject.name={name},involvedObject.kind={KIND}"
    body = raw(kube.core.list_namespaced_event, "default", field_selector=selector)
    ours = [e for e in body.get("items") or [] if e["source"].get("component") == kube.component]
    return sorted(ours, key=lambda e: int(e["metadata"]["resourceVersion"]))


class Loop:
    """The release loop on one namespace: real caches fed by real watches, a reconciler driven by hand."""

    def __init__(
        self, kube: Kube, namespace: str, *, metrics: ControllerMetrics | None = None, gate: bool = False
    ) -> None:
        """`gate`: with the PodDisruptionBudget gate (its own caches), as the controller runs it."""
        self.enqueued: list[str] = []
        self.stop_event = threading.Event()
        self.fleet = FleetCache(
            kube, enqueue=self.enqueued.append, stop=self.stop_event, namespaces=[namespace], watch_timeout=30
        )
        self.budgets = BudgetCache(kube, namespaces=[namespace], watch_timeout=30) if gate else None
        self.metrics = metrics or ControllerMetrics(CollectorRegistry())
        self.reconciler = ReleaseReconciler(kube, self.fleet, metrics=self.metrics, budgets=self.budgets)

    def start(self) -> "Loop":
        self.fleet.start()
        assert self.fleet.wait_synced(timeout=30), "the caches listed"
        if self.budgets is not None:
            self.budgets.start()
            assert self.budgets.synced(timeout=30), "the budget caches listed"
        return self

    def cached(self, *names: str) -> None:
        """Wait until the release cache holds `names` (their creation came through the watch)."""
        wait_until(lambda: set(names) <= set(self.fleet.releases()), timeout=10, what=f"{names} cached")

    def close(self) -> None:
        self.stop_event.set()
        if self.budgets is not None:
            self.budgets.close()


@contextmanager
def release_loop(kube: Kube, namespace: str, **kwargs: Any) -> Iterator[Loop]:
    loop = Loop(kube, namespace, **kwargs).start()
    try:
        yield loop
    finally:
        loop.close()
