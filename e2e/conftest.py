"""Fixtures of the e2e suite: a cluster from KUBECONFIG, the webhook (and controller) as host processes,
a fresh opted-in namespace per test, and the demo workload."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from e2e import kube, upgrade, webhook_host

# The suite-wide rule applies here too: in CI a skipped test is a failure.
from tests.conftest import pytest_runtest_logreport  # noqa: F401
from webhook import contract

# Short drains keep the suite quick; the behaviour under test does not depend on their length.
DRAIN_SECONDS = 5
PARENT_SHUTDOWN_SECONDS = 8
DEMO_IMAGE = "sidecar-hotupgrade/demo-app:0.1.0"
SIDECAR_IMAGES = ("sidecar-hotupgrade/sidecar:0.1.0", "sidecar-hotupgrade/sidecar:0.1.1")
BROKEN_IMAGE = "sidecar-hotupgrade/sidecar:broken"
EMPTY_IMAGE = "sidecar-hotupgrade/empty:0.1.0"
POD_READY_TIMEOUT = 240.0
UPGRADE_TIMEOUT = 300.0


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


@pytest.fixture(scope="session")
def webhook(api: client.ApiClient, workdir: Path) -> Iterator[webhook_host.WebhookHost]:
    """`hotupgrade-webhook serve` on the host, registered for opted-in namespaces; removed afterwards."""
    address = os.environ.get("E2E_WEBHOOK_HOST") or webhook_host.host_address()
    config = webhook_host.webhook_config(DRAIN_SECONDS, PARENT_SHUTDOWN_SECONDS)
    host = webhook_host.start_webhook(workdir / "webhook", address, config)
    try:
        webhook_host.register(api, host)
        yield host
    finally:
        webhook_host.unregister(api)
        host.stop()


@pytest.fixture(scope="session")
def controller_api(api: client.ApiClient) -> client.ApiClient:
    """A client authenticated as the controller's ServiceAccount (the identity the guard lets through)."""
    return kube.token_client(api, webhook_host.controller_identity(api))


def driver() -> str:
    """`controller` (annotate; the real controller upgrades) or `direct` (the suite makes its API calls)."""
    return os.environ.get("E2E_UPGRADE_DRIVER", "controller")


def write_controller_kubeconfig(controller_api: client.ApiClient, path: Path) -> Path:
    """A kubeconfig with the controller ServiceAccount's token (the identity the guard lets through)."""
    cfg = controller_api.configuration
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [
            {"name": "c", "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert}}
        ],
        "users": [{"name": "u", "user": {"token": cfg.api_key["authorization"]}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


def start_controller(
    controller_api: client.ApiClient,
    workdir: Path,
    *,
    name: str = "controller",
    namespaces: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """The controller as a host process logging to workdir/<name>.log; all namespaces by default."""
    path = write_controller_kubeconfig(controller_api, workdir / f"{name}.kubeconfig")
    log = (workdir / f"{name}.log").open("ab")
    exe = str(Path(sys.executable).with_name("hotupgrade-controller"))
    scope = [arg for ns in namespaces for arg in ("--namespace", ns)]
    process = subprocess.Popen(
        [
            exe,
            "--kubeconfig",
            str(path),
            *scope,
            "--no-leader-elect",
            "--metrics-port",
            "0",
            "--allow-image-prefix",
            "sidecar-hotupgrade/",
            "--step-timeout",
            "180",
            "--drain-grace",
            "60",
            "--poll-interval",
            "0.5",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return process


def stop_controller(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM (SIGKILL after 20 s); the log's tail goes to stderr unless it stopped cleanly."""
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.returncode not in (0, -15):
        print(log.read_text()[-4000:], file=sys.stderr)


@pytest.fixture(scope="session")
def controller(api: client.ApiClient, controller_api: client.ApiClient, workdir: Path) -> Iterator[str]:
    """The upgrade controller as a host process with the ServiceAccount's token (controller driver only)."""
    if driver() != "controller":
        yield "direct"
        return
    process = start_controller(controller_api, workdir)
    try:
        yield "controller"
    finally:
        stop_controller(process, workdir / "controller.log")


@pytest.fixture
def namespace(api: client.ApiClient, webhook: webhook_host.WebhookHost) -> Iterator[str]:
    """A fresh namespace opted in to injection; deleted (not waited for) after the test."""
    name = f"hu-e2e-{uuid.uuid4().hex[:6]}"
    core = kube.core(api)
    core.create_namespace(
        {"metadata": {"name": name, "labels": {contract.LABEL_NAMESPACE_INJECTION: "enabled"}}}
    )
    kube.wait_until("default ServiceAccount", lambda: has_default_sa(core, name), 60)
    try:
        yield name
    finally:
        core.delete_namespace(name, grace_period_seconds=0)


def has_default_sa(core: Any, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except client.ApiException:
        return False
    return True


def demo_deployment(name: str, replicas: int = 1, labels: dict[str, str] | None = None) -> dict[str, Any]:
    pod_labels = {"app": name, **(labels or {})}
    return {
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


def deploy_and_wait(
    api: client.ApiClient, namespace: str, name: str, replicas: int = 1, labels: dict[str, str] | None = None
) -> list[kube.Pod]:
    """Create the demo Deployment and wait until every replica is Ready."""
    kube.apps(api).create_namespaced_deployment(namespace, demo_deployment(name, replicas, labels))

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


def run_upgrade(
    api: client.ApiClient,
    controller_api: client.ApiClient,
    mode: str,
    *,
    namespace: str,
    pod: str,
    image: str,
) -> upgrade.Outcome:
    """Upgrade one pod's sidecar to `image` through the chosen driver; the outcome."""
    if mode == "controller":
        upgrade.annotate_target(api, namespace, pod, image)
        return upgrade.wait_controller_outcome(api, namespace, pod, image, UPGRADE_TIMEOUT)
    return upgrade.direct_upgrade(
        api, controller_api, namespace=namespace, name=pod, image=image, timeout=UPGRADE_TIMEOUT
    )
