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

from localcluster import registry
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
