"""The e2e suite's settings and workload, shared by e2e/ and bench/: the chart values and a fresh chart
release, an opted-in namespace, the demo Deployment, a ClusterIP Service in front of it and the suite's
load. Moved out of e2e/conftest.py, e2e/test_pull_window.py and e2e/test_upgrade.py so the tools
(bench/) import no tests."""

from __future__ import annotations

import contextlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kubernetes import client

from clusterkit import images, kube, release
from podharness.load import LoadConfig, LoadGenerator
from webhook import contract

# Short drains keep the suite quick; the behaviour under test does not depend on their length.
DRAIN_SECONDS = 5


PARENT_SHUTDOWN_SECONDS = 8


# The names the cluster pulls them as: from the local cluster's registry (the target behind basic auth),
# or plain names of loaded images (kind); clusterkit/images.py.
IMAGES = images.suite_images(images.local_registry())


DEMO_IMAGE = IMAGES.demo


SIDECAR_IMAGES = IMAGES.sidecars


BROKEN_IMAGE = IMAGES.broken


EMPTY_IMAGE = IMAGES.empty


POD_READY_TIMEOUT = 240.0


UPGRADE_TIMEOUT = 300.0


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


def namespace_exists(api: client.ApiClient, name: str) -> bool:
    try:
        kube.core(api).read_namespace(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


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


def service_manifest(name: str) -> dict[str, Any]:
    """A ClusterIP Service in front of the pair's HTTP and TCP listeners."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": name},
            "ports": [
                {"name": "http", "port": contract.LISTEN_PORT, "targetPort": contract.LISTEN_PORT},
                {"name": "tcp", "port": contract.TCP_LISTEN_PORT, "targetPort": contract.TCP_LISTEN_PORT},
            ],
        },
    }


def answers(host: str, port: int = contract.LISTEN_PORT) -> bool:
    """One HTTP request to `host` succeeds (through a Service: its rules are in place)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start_load_to(
    host: str,
    max_seconds: float = 1200.0,
    *,
    http_port: int = contract.LISTEN_PORT,
    tcp_port: int = contract.TCP_LISTEN_PORT,
) -> LoadGenerator:
    """The suite's mix of HTTP/1.1, HTTP/2 and TCP load at host (a pod IP or a Service's ClusterIP), to
    Envoy's listeners unless other ports are named (a Service on the app's ports, with capture)."""
    cfg = LoadConfig(host=host, http_port=http_port, tcp_port=tcp_port, max_seconds=max_seconds,
                     http1_connections=4, http2_connections=1, http2_streams=4, tcp_connections=2,
                     request_timeout_s=10.0)  # fmt: skip
    return LoadGenerator(cfg).start()
