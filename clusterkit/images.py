"""The e2e images by the names the cluster under test pulls them as, and the pull secret they need.

On the local cluster (KUBECONFIG names its admin kubeconfig and its registry runs) the kubelet pulls
every e2e image from the node's registry (localcluster/registry.py, localcluster/nodeimages.py): the
upgrade target from the instance behind basic auth, so pods (and the controller's pre-pull pods, which
copy their pull secrets) need `imagePullSecrets`; the suite puts the secret on each namespace's default
ServiceAccount, as users do. Elsewhere (kind) the images are loaded under their plain names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from localcluster import registry, registryclient
from localcluster import settings as s

PULL_SECRET = "e2e-registry-pull"
REPO = "sidecar-hotupgrade"


@dataclass(frozen=True)
class SuiteImages:
    """Image references of the suite and what the controller must allow as targets."""

    demo: str
    sidecars: tuple[str, str]  # (injected, upgrade target)
    broken: str
    empty: str
    allow_prefixes: tuple[str, ...]
    pull_secret: str | None  # `.dockerconfigjson` for the private instance, None when nothing is private


def suite_images(endpoints: registry.Endpoints | None) -> SuiteImages:
    """The names on a cluster with the local registry (endpoints) or with loaded images (None). Pure."""
    plain = {
        "demo": f"{REPO}/demo-app:0.1.0",
        "sidecar": f"{REPO}/sidecar:0.1.0",
        "target": f"{REPO}/sidecar:0.1.1",
        "broken": f"{REPO}/sidecar:broken",
        "empty": f"{REPO}/empty:0.1.0",
    }
    if endpoints is None:
        return SuiteImages(
            demo=plain["demo"],
            sidecars=(plain["sidecar"], plain["target"]),
            broken=plain["broken"],
            empty=plain["empty"],
            allow_prefixes=(f"{REPO}/",),
            pull_secret=None,
        )
    return SuiteImages(
        demo=registry.image_ref(endpoints, plain["demo"]),
        sidecars=(
            registry.image_ref(endpoints, plain["sidecar"]),
            registry.image_ref(endpoints, plain["target"], private=True),
        ),
        broken=registry.image_ref(endpoints, plain["broken"]),
        empty=registry.image_ref(endpoints, plain["empty"]),
        allow_prefixes=(f"{endpoints.public}/{REPO}/", f"{endpoints.private}/{REPO}/"),
        pull_secret=registry.docker_config_json(endpoints),
    )


def local_registry() -> registry.Endpoints | None:
    """The local cluster's registry when KUBECONFIG names the local cluster and its registry was started."""
    named = os.environ.get("KUBECONFIG", "")
    if not named or Path(named).resolve() != s.ADMIN_KUBECONFIG.resolve():
        return None
    try:
        return registry.load_endpoints()
    except FileNotFoundError:
        return None


def digest_reference(endpoints: registry.Endpoints, image: str) -> str:
    """`host:port/repo@sha256:...` for a tag the registry serves, as users pin targets: the kubelet pulls
    it by digest from the registry, nothing needs to be on the node first."""
    address, _, rest = image.partition("/")
    repository, tag = registry.repository_and_tag(image)
    if address not in (endpoints.public, endpoints.private):
        raise ValueError(f"{image} is not served by the local registry")
    auth = (endpoints.username, endpoints.password) if address == endpoints.private else None
    client = registryclient.Registry(address, ca_file=endpoints.ca_file, auth=auth)
    digest = client.manifest_digest(repository, tag)
    if digest is None:
        raise LookupError(f"the registry holds no {rest}")
    return f"{address}/{repository}@{digest}"
