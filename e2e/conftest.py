"""Fixtures of the e2e suite: a cluster from KUBECONFIG, the chart installed once per session (its
in-cluster webhook and controller are the ones every test talks to, and they see only the suite's own
namespaces), a fresh opted-in namespace per test, and the demo workload."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import images, kube, release

# The suite-wide rule applies here too: in CI a skipped test is a failure.
from tests.conftest import pytest_runtest_logreport  # noqa: F401
from webhook import contract

# Short drains keep the suite quick; the behaviour under test does not depend on their length.
DRAIN_SECONDS = 5
PARENT_SHUTDOWN_SECONDS = 8
# The names the cluster pulls them as: from the local cluster's registry (the target behind basic auth),
# or plain names of loaded images (kind); e2e/images.py.
IMAGES = images.suite_images(images.local_registry())
DEMO_IMAGE = IMAGES.demo
SIDECAR_IMAGES = IMAGES.sidecars
BROKEN_IMAGE = IMAGES.broken
EMPTY_IMAGE = IMAGES.empty
POD_READY_TIMEOUT = 240.0
UPGRADE_TIMEOUT = 300.0
# The session's release; overridable for sharing a cluster with another run of the suite.
SUITE_RELEASE = release.Release(
    os.environ.get("E2E_RELEASE", "hu-e2e"), os.environ.get("E2E_RELEASE_NAMESPACE", "hotupgrade-e2e")
)


def chart_values(of: release.Release, *, watch_namespaces: tuple[str, ...]) -> dict[str, Any]:
    """The suite's chart values for `of`: the e2e images and short drains; its controller watches
    `watch_namespaces` only (never empty here: the chart reads that as every namespace)."""
    assert watch_namespaces, "an empty watchNamespaces would let the controller act on the whole cluster"
    return release.values(
        of,
        sidecar_image=SIDECAR_IMAGES[0],
        empty_image=EMPTY_IMAGE,
        drain_seconds=DRAIN_SECONDS,
        parent_shutdown_seconds=PARENT_SHUTDOWN_SECONDS,
        watch_namespaces=watch_namespaces,
        allow_image_prefixes=IMAGES.allow_prefixes,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def api() -> client.ApiClient:
    """Admin client for the cluster KUBECONFIG names."""
    return kube.api_client()


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hotupgrade-e2e-") as tmp:
        yield Path(tmp)


@dataclass
class NamespacePool:
    """Names of the per-test namespaces, fixed before the session release is installed: its controller
    watches exactly these (on a shared cluster it must never act on anyone else's pods)."""

    names: tuple[str, ...]
    used: int = 0

    def take(self) -> str:
        if self.used == len(self.names):
            raise AssertionError(f"all {len(self.names)} namespaces collected for this session are in use")
        self.used += 1
        return self.names[self.used - 1]


@pytest.fixture(scope="session")
def namespace_pool(request: pytest.FixtureRequest) -> NamespacePool:
    """One namespace name per collected test that asks for `namespace`, unique to this session."""
    count = sum("namespace" in getattr(item, "fixturenames", ()) for item in request.session.items)
    count = max(count, 1)  # never empty: the chart reads no namespaces as "watch every namespace"
    run = uuid.uuid4().hex[:6]
    return NamespacePool(tuple(f"hu-e2e-{run}-{index}" for index in range(count)))


@pytest.fixture(scope="session")
def suite_release(
    api: client.ApiClient, workdir: Path, namespace_pool: NamespacePool
) -> Iterator[release.Release]:
    """The chart installed for the session: its webhook injects and guards, its controller (two
    replicas, one leader) upgrades in the pool's namespaces. A leftover of an aborted run is
    uninstalled first, so the pods always run the images just imported. Uninstalled at the end."""
    values_file = workdir / "suite-values.yaml"
    values = chart_values(SUITE_RELEASE, watch_namespaces=namespace_pool.names)
    # One webhook replica serves a session (nothing rolls it) and spares a pod on a small machine; the
    # controller keeps two, so a killed leader is followed the way it is on users' clusters.
    values["webhook"] = {"replicas": 1}
    values_file.write_text(yaml.safe_dump(values))
    with fresh_release(api, SUITE_RELEASE, values_file) as installed:
        yield installed


@contextlib.contextmanager
def fresh_release(api: client.ApiClient, of: release.Release, values_file: Path) -> Iterator[release.Release]:
    """`of` installed from `values_file` with its controller leading, after a leftover of an aborted run
    is uninstalled (and its namespace gone); uninstalled afterwards."""
    release.uninstall(api, of)
    kube.wait_until(
        f"namespace {of.namespace} gone", lambda: not namespace_exists(api, of.namespace), 180, interval=1.0
    )
    try:
        release.install(api, of, values_file)
        release.wait_leader(api, of)
        yield of
    finally:
        release.uninstall(api, of)


@contextlib.contextmanager
def module_release(
    api: client.ApiClient,
    workdir: Path,
    of: release.Release,
    *,
    app_namespace: str,
    injection: dict[str, Any],
) -> Iterator[release.Release]:
    """A release of a test module's own: the suite's values with `injection` merged in, one webhook and one
    controller replica (leader election works the same with one candidate), watching `app_namespace` only."""
    values: dict[str, Any] = chart_values(of, watch_namespaces=(app_namespace,))
    values["injection"].update(injection)
    values["webhook"] = {"replicas": 1}
    values["controller"]["replicas"] = 1
    values_file = workdir / f"{of.name}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    with fresh_release(api, of, values_file) as installed:
        yield installed


def namespace_exists(api: client.ApiClient, name: str) -> bool:
    try:
        kube.core(api).read_namespace(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture
def namespace(
    api: client.ApiClient, suite_release: release.Release, namespace_pool: NamespacePool
) -> Iterator[str]:
    """A fresh namespace opted in to injection, seen by the session release's webhook and controller;
    deleted (not waited for) after the test."""
    labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
    with scoped_namespace(api, suite_release, labels, name=namespace_pool.take()) as name:
        yield name


@contextlib.contextmanager
def scoped_namespace(
    api: client.ApiClient, of: release.Release, labels: dict[str, str], *, name: str | None = None
) -> Iterator[str]:
    """A fresh namespace whose pods the webhooks of `of` see, with `labels`; deleted (not waited for)
    afterwards. `of`'s controller sees it only if it is one of the watched namespaces."""
    name = name or f"hu-e2e-{uuid.uuid4().hex[:6]}"
    core = kube.core(api)
    core.create_namespace({"metadata": {"name": name, "labels": {**of.scope, **labels}}})
    try:
        kube.wait_until("default ServiceAccount", lambda: has_default_sa(core, name), 60)
        grant_pulls(core, name)
        yield name
    finally:
        core.delete_namespace(name, grace_period_seconds=0)


def grant_pulls(core: Any, namespace: str) -> None:
    """The registry's pull secret on the namespace's default ServiceAccount (if the images need one), so
    every pod created afterwards pulls the private upgrade target (ServiceAccount admission copies it)."""
    if IMAGES.pull_secret is None:
        return
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": images.PULL_SECRET},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": IMAGES.pull_secret},
        },
    )
    patch = {"imagePullSecrets": [{"name": images.PULL_SECRET}]}
    core.patch_namespaced_service_account("default", namespace, patch)


def has_default_sa(core: Any, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return True


# What a chart passing Pod Security `restricted` sets for the demo app (its image runs as root by default):
# non-root at the pod level, the rest per container (the usual layout, which leaves the pair to set its own).
RESTRICTED_POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532}
RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def demo_deployment(
    name: str, replicas: int = 1, labels: dict[str, str] | None = None, *, restricted: bool = False
) -> dict[str, Any]:
    """The demo app as a Deployment; `restricted`: with the securityContext Pod Security `restricted` asks."""
    pod_labels = {"app": name, **(labels or {})}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "app",
                            "image": DEMO_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 8080}, {"containerPort": 9000}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
        },
    }
    if restricted:
        spec = deployment["spec"]["template"]["spec"]
        spec["securityContext"] = dict(RESTRICTED_POD_SECURITY)
        spec["containers"][0]["securityContext"] = dict(RESTRICTED_CONTAINER_SECURITY)
    return deployment


def deploy_and_wait(
    api: client.ApiClient,
    namespace: str,
    name: str,
    replicas: int = 1,
    labels: dict[str, str] | None = None,
    *,
    restricted: bool = False,
) -> list[kube.Pod]:
    """Create the demo Deployment and wait until every replica is Ready."""
    manifest = demo_deployment(name, replicas, labels, restricted=restricted)
    kube.apps(api).create_namespaced_deployment(namespace, manifest)

    def ready() -> list[kube.Pod] | None:
        pods = kube.list_pods(api, namespace, f"app={name}")
        if len(pods) == replicas and all(kube.condition(p, "Ready") for p in pods):
            return pods
        return None

    try:
        return kube.wait_until(f"{namespace}/{name} Ready", ready, POD_READY_TIMEOUT, interval=1.0)
    except TimeoutError:
        pods = kube.list_pods(api, namespace, f"app={name}")
        raise AssertionError(f"pods not Ready: {[p.get('status') for p in pods]}") from None


def demo_job(name: str, script: str) -> dict[str, Any]:
    """A Job of one pod (restartPolicy Never, no retry) whose container `work` runs the Python `script`
    in the demo app's image."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "work",
                            "image": DEMO_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/usr/bin/python3", "-c", script],
                        }
                    ],
                },
            },
        },
    }


def job_pod(api: client.ApiClient, namespace: str, name: str) -> kube.Pod:
    """The one pod of Job `name`, once the Job controller created it."""
    selector = f"batch.kubernetes.io/job-name={name}"

    def found() -> kube.Pod | None:
        pods = kube.list_pods(api, namespace, selector)
        assert len(pods) <= 1, f"backoffLimit 0 and no failure, yet {len(pods)} pods"
        return pods[0] if pods else None

    return kube.wait_until(f"a pod of Job {namespace}/{name}", found, POD_READY_TIMEOUT, interval=0.5)


def wait_job_succeeded(api: client.ApiClient, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The Job (JSON) once `status.succeeded` is 1; fails at once when its pod failed."""

    def done() -> dict[str, Any] | None:
        resp = kube.batch(api).read_namespaced_job(name, namespace, _preload_content=False)
        job: dict[str, Any] = json.loads(resp.data)
        status = job.get("status") or {}
        assert not status.get("failed"), f"Job {name} failed: {status}"
        return job if status.get("succeeded") == 1 else None

    return kube.wait_until(f"Job {namespace}/{name} succeeded", done, timeout, interval=0.5)
