"""Run the admission webhook as a host process and register it with the cluster (until the chart does)."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from e2e import kube
from localcluster import pki
from webhook import contract

MUTATING_NAME = "hotupgrade-e2e-injector"
VALIDATING_NAME = "hotupgrade-e2e-guard"
CONTROLLER_NAMESPACE = "hotupgrade-system"
CONTROLLER_ACCOUNT = "hotupgrade-controller"
CONTROLLER_USER = f"system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def host_address() -> str:
    """The host's address as the API server sees it: its default-route source address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route's source address
        address: str = sock.getsockname()[0]
        return address


def webhook_config(drain_seconds: int, parent_shutdown_seconds: int) -> dict[str, Any]:
    """The webhook's YAML config for the suite: local images, short drains, the controller's identity."""
    return {
        "sidecarImage": "sidecar-hotupgrade/sidecar:0.1.0",
        "emptyImage": "sidecar-hotupgrade/empty:0.1.0",
        "imagePullPolicy": "IfNotPresent",
        "drainSeconds": drain_seconds,
        "parentShutdownSeconds": parent_shutdown_seconds,
        "controllerServiceAccount": CONTROLLER_USER,
        "ports": {"upstream": 8080, "tcpUpstream": 9000},
    }


@dataclass
class WebhookHost:
    """A running `hotupgrade-webhook serve` and the CA the API server trusts it with."""

    process: subprocess.Popen[bytes]
    url: str
    ca_pem: bytes
    workdir: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_webhook(workdir: Path, address: str, config: dict[str, Any]) -> WebhookHost:
    """Write a CA + serving cert for `address`, start the webhook on it, wait for /readyz."""
    workdir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_pem, ca_key = pki.make_ca(now)
    spec = pki.CertSpec("webhook", "hotupgrade-e2e-webhook", ip_addresses=(address,), server=True)
    cert, key = pki.make_leaf(spec, ca_pem, ca_key, now)
    (workdir / "tls.crt").write_bytes(cert + ca_pem)
    (workdir / "tls.key").write_bytes(key)
    (workdir / "ca.crt").write_bytes(ca_pem)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "webhook.log").open("ab")
    exe = str(Path(sys.executable).with_name("hotupgrade-webhook"))
    process = subprocess.Popen(
        [
            exe,
            "serve",
            "--bind",
            f"0.0.0.0:{port}",
            "--tls-cert",
            str(workdir / "tls.crt"),
            "--tls-key",
            str(workdir / "tls.key"),
            "--config",
            str(workdir / "config.yaml"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    host = WebhookHost(process, f"https://{address}:{port}", ca_pem, workdir)
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"webhook exited {process.returncode}: {(workdir / 'webhook.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(host.url + "/readyz", context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return host
        except OSError:
            time.sleep(0.3)
    host.stop()
    raise TimeoutError("webhook did not become ready in 60s")


def _selectors() -> dict[str, Any]:
    return {
        "namespaceSelector": {"matchLabels": {contract.LABEL_NAMESPACE_INJECTION: "enabled"}},
        "objectSelector": {
            "matchExpressions": [{"key": contract.LABEL_POD_INJECT, "operator": "NotIn", "values": ["false"]}]
        },
    }


def configuration(
    kind: str, name: str, hook: str, *, url: str, operation: str, ca: str, **extra: str
) -> dict[str, Any]:
    """A webhook configuration with one webhook on pods for `operation`, opted-in namespaces only."""
    webhook = {
        "name": hook,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [
            {"operations": [operation], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        **_selectors(),
        **extra,
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name},
        "webhooks": [webhook],
    }


def register(api: client.ApiClient, host: WebhookHost) -> None:
    """Create (or replace) the mutating and validating configurations pointing at the host webhook."""
    ca = base64.b64encode(host.ca_pem).decode()
    mutating = configuration(
        "MutatingWebhookConfiguration",
        MUTATING_NAME,
        "inject.hotupgrade.io",
        url=f"{host.url}/mutate",
        operation="CREATE",
        ca=ca,
        reinvocationPolicy="Never",
    )
    validating = configuration(
        "ValidatingWebhookConfiguration",
        VALIDATING_NAME,
        "guard.hotupgrade.io",
        url=f"{host.url}/validate",
        operation="UPDATE",
        ca=ca,
    )
    adm = kube.admission(api)
    unregister(api)
    adm.create_mutating_webhook_configuration(mutating)
    adm.create_validating_webhook_configuration(validating)


def unregister(api: client.ApiClient) -> None:
    adm = kube.admission(api)
    for delete, name in (
        (adm.delete_mutating_webhook_configuration, MUTATING_NAME),
        (adm.delete_validating_webhook_configuration, VALIDATING_NAME),
    ):
        try:
            delete(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def controller_identity(api: client.ApiClient) -> str:
    """The controller's ServiceAccount (cluster-admin for the suite) and a token for it."""
    core = kube.core(api)
    creates: list[Callable[[], object]] = [
        lambda: core.create_namespace({"metadata": {"name": CONTROLLER_NAMESPACE}}),
        lambda: core.create_namespaced_service_account(
            CONTROLLER_NAMESPACE, {"metadata": {"name": CONTROLLER_ACCOUNT}}
        ),
        lambda: kube.rbac(api).create_cluster_role_binding(
            {
                "metadata": {"name": "hotupgrade-e2e-controller"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "cluster-admin",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": CONTROLLER_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}
                ],
            }
        ),
    ]
    for create in creates:
        try:
            create()
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    request = {"spec": {"audiences": [], "expirationSeconds": 7200}}
    resp = core.create_namespaced_service_account_token(
        CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE, request, _preload_content=False
    )
    token: str = json.loads(resp.data)["status"]["token"]
    return token
