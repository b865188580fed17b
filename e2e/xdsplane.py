"""The xDS test server (localcluster/xdsserver, go-control-plane) as a control plane in the cluster under
test, for e2e/test_xds.py: its image delivered where the cluster pulls it from, a Deployment + Service,
scaling it, and its HTTP control API on the pod IP (the suite runs on the node's network, as it does
for the pods' agents).

The image is the server's static binary alone (localcluster.xds.ensure_image, built on demand from the
Go module proxy and cached) and takes the route of e2e/previmage.py: on the local cluster it is pushed
to the node's registry (public instance, no pull secret) and pulled by the kubelet; on kind
(`make e2e-kind` names its kind binary and cluster) the OCI archive is loaded with
`kind load image-archive` (containerd names it from the archive's `io.containerd.image.name`, no Docker
build needed); on any other cluster it is expected under its plain name.

Envoys reach ADS through the Service's ClusterIP, not a DNS name: the local cluster has no CoreDNS
(localcluster/README.md), and an IP works on kind too (the `xds` bootstrap uses a STATIC cluster for it).
The server keeps snapshots in memory only, so a pod started after a scale-up serves nothing until the
test pushes again.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from clusterkit import kube
from localcluster import nodeimages, registry, xds
from localcluster import settings as s
from localcluster.imagebuilder import builder
from podharness.xds import ServerAPI

log = logging.getLogger("e2e")

NAME = "xds-control-plane"
SELECTOR = f"app={NAME}"
READY_TIMEOUT_S = 180.0
# One key=value of the server's slog text lines (a value with spaces is quoted).
LOG_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


# ---- the image --------------------------------------------------------------------------------------


def reference(endpoints: registry.Endpoints | None, archive_name: str) -> str:
    """The name pods use for the image `archive_name` (docker.io/...): the public registry instance's on
    the local cluster, else the plain one. Pure."""
    plain = archive_name.removeprefix("docker.io/")
    return plain if endpoints is None else registry.image_ref(endpoints, plain)


def provide_image(endpoints: registry.Endpoints | None, environ: Mapping[str, str] = os.environ) -> str:
    """Build (cached) and deliver the server's image where the cluster pulls it from; its reference."""
    archive = xds.ensure_image()
    name = archive.with_suffix(".ref").read_text().split()[0]
    if endpoints is not None:
        built = nodeimages.read_built([archive])
        registry.push(endpoints, [b.archive for b in nodeimages.plan(built).pushed])
        # The tag is the module's hash, so a stale record can only be a broken earlier pull; drop it anyway.
        present = builder.present_images(s.CONTAINERD_SOCKET)
        stale = nodeimages.stale_refs(present, nodeimages.plan(built), endpoints)
        nodeimages.remove_records(s.CONTAINERD_SOCKET, stale)
    elif environ.get("E2E_KIND_CLUSTER"):
        kind = environ.get("E2E_KIND") or "kind"
        argv = [kind, "load", "image-archive", "--name", environ["E2E_KIND_CLUSTER"], str(archive)]
        log.info("event=kind-load-archive image=%s archive=%s", name, archive)
        subprocess.run(argv, env=dict(environ), check=True)
    else:
        log.info("event=xds-image-assumed image=%s", name)
    return reference(endpoints, name)


# ---- the workload -----------------------------------------------------------------------------------


def deployment(image: str) -> dict[str, Any]:
    """One replica of the server, Ready once its HTTP API answers; never injected (its namespace is not
    opted in). Pure."""
    probe = {"httpGet": {"path": "/healthz", "port": xds.HTTP_PORT}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [
                                {"name": "ads", "containerPort": xds.ADS_PORT},
                                {"name": "http", "containerPort": xds.HTTP_PORT},
                            ],
                            "readinessProbe": probe,
                        }
                    ],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    """ADS (gRPC, h2c) on the Service's ClusterIP. Pure."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME},
        "spec": {
            "selector": {"app": NAME},
            "ports": [{"name": "grpc-ads", "port": xds.ADS_PORT, "targetPort": xds.ADS_PORT}],
        },
    }


def deploy(api: client.ApiClient, namespace: str, image: str) -> str:
    """Create the Deployment and Service; the ADS address Envoys are given (`ClusterIP:port`)."""
    kube.apps(api).create_namespaced_deployment(namespace, deployment(image))
    created = kube.core(api).create_namespaced_service(namespace, service())
    return f"{created.spec.cluster_ip}:{xds.ADS_PORT}"


def scale(api: client.ApiClient, namespace: str, replicas: int) -> ServerAPI | None:
    """Scale the server to `replicas` (0 or 1) and wait: the API of the Ready pod, None when scaled to 0
    (its pod gone, so every ADS stream is closed)."""
    kube.apps(api).patch_namespaced_deployment_scale(NAME, namespace, {"spec": {"replicas": replicas}})
    if replicas == 0:
        kube.wait_until(f"no pod of {NAME}", lambda: not kube.list_pods(api, namespace, SELECTOR), 120)
        return None
    return wait_ready(api, namespace)


def wait_ready(api: client.ApiClient, namespace: str) -> ServerAPI:
    """The HTTP API of the server's one pod, once that pod is Ready (no other pod of it left)."""

    def ready() -> kube.Pod | None:
        pods = kube.list_pods(api, namespace, SELECTOR)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(pods) == 1 and len(live) == 1 and kube.condition(live[0], "Ready"):
            return live[0]
        return None

    pod = kube.wait_until(f"{namespace}/{NAME} Ready", ready, READY_TIMEOUT_S, interval=0.5)
    return ServerAPI(f"http://{pod['status']['podIP']}:{xds.HTTP_PORT}")


def acked_versions(log_text: str, node: str) -> set[str]:
    """Every snapshot version a stream of `node` ACKed, from the server's log (`event=ack ... node=...
    version=...`, localcluster/xdsserver/status.go). Pure."""
    found = set()
    for line in log_text.splitlines():
        fields = dict(LOG_FIELD.findall(line))
        if fields.get("event") == "ack" and fields.get("node") == node and "version" in fields:
            found.add(fields["version"])
    return found


def server_log(api: client.ApiClient, namespace: str) -> str:
    """The log of the server's one pod."""
    [pod] = kube.list_pods(api, namespace, SELECTOR)
    text: str = kube.core(api).read_namespaced_pod_log(pod["metadata"]["name"], namespace)
    return text
