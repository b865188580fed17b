"""Digest references (`repo@sha256:...`) for the suite's images, as users pin upgrade targets.

The suite's images reach the node's containerd by import under their tags (localcluster/imagebuilder, or
`kind load`), so containerd holds no record named `repo@sha256:...` and the kubelet, finding none, would try
to pull one from a registry. A pull by digest leaves exactly such a record behind; tagging the imported image
with its own digest reference does the same here, after which the kubelet finds it with IfNotPresent.
Runs `ctr` where the node's containerd is: on this machine (the local cluster), or inside kind's node.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from kubernetes import client

from clusterkit import kube
from localcluster import settings
from localcluster.imagebuilder.builder import parse_image_list


def only_node(api: client.ApiClient) -> dict[str, Any]:
    """The cluster's one node (the suite's clusters have one; its images are where its pods run)."""
    nodes: list[dict[str, Any]] = json.loads(kube.core(api).list_node(_preload_content=False).data)["items"]
    assert len(nodes) == 1, f"expected a single-node cluster, found {[n['metadata']['name'] for n in nodes]}"
    return nodes[0]


def ctr_argv(node: dict[str, Any]) -> list[str]:
    """`ctr` on the node's containerd, in the namespace the kubelet's CRI uses."""
    if str(node["spec"].get("providerID", "")).startswith("kind://"):
        return ["docker", "exec", node["metadata"]["name"], "ctr", "--namespace=k8s.io"]
    return ["ctr", f"--address={settings.CONTAINERD_SOCKET}", "--namespace=k8s.io"]


def qualified(image: str) -> str:
    """containerd's name for `image`: a reference without a registry host is docker.io's."""
    first = image.split("/", 1)[0]
    has_host = "/" in image and ("." in first or ":" in first or first == "localhost")
    return image if has_host else f"docker.io/{image}"


def pin_by_digest(api: client.ApiClient, image: str) -> tuple[str, str]:
    """(`repo@sha256:<manifest digest>` for the tagged `image` on the node, the digest); the node resolves
    the pinned reference afterwards. Fails when `image` is not on the node."""
    argv = ctr_argv(only_node(api))
    listing = parse_image_list(
        subprocess.run([*argv, "images", "ls"], check=True, text=True, capture_output=True).stdout
    )
    name = qualified(image)
    assert name in listing, f"{name} is not on the node: {sorted(listing)}"
    digest = listing[name]
    repository = image.rsplit(":", 1)[0]
    if f"{qualified(repository)}@{digest}" not in listing:
        subprocess.run(
            [*argv, "images", "tag", name, f"{qualified(repository)}@{digest}"],
            check=True,
            capture_output=True,
        )
    return f"{repository}@{digest}", digest
