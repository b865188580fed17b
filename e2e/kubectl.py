"""`kubectl apply` as users run it: the pinned kubectl the local cluster is built with
(localcluster/settings.py K8S_BIN_DIR, the same Kubernetes release as the cluster), on the cluster
KUBECONFIG names. Where that binary is absent, the same object goes to the API as a server-side apply,
the API's own `apply`; `how()` says which one a run used, for its report.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic

from localcluster import settings as s

KUBECTL = s.K8S_BIN_DIR / "kubectl"
FIELD_MANAGER = "hotupgrade-e2e"
TIMEOUT_S = 60.0


def how() -> str:
    """`kubectl <version>` when the pinned binary is there, else `server-side apply (API)`."""
    return f"kubectl {s.K8S_VERSION}" if KUBECTL.exists() else "server-side apply (API)"


def apply(api: client.ApiClient, manifest: dict[str, Any], *, server_side: bool = False) -> str:
    """`kubectl apply -f` of one object (its YAML); kubectl's output. `server_side`: `--server-side
    --force-conflicts`, for an object too large for the last-applied annotation (a CRD)."""
    if KUBECTL.exists():
        extra = (
            ("--server-side", "--force-conflicts", f"--field-manager={FIELD_MANAGER}") if server_side else ()
        )
        return _kubectl("apply", manifest, *extra)
    return _server_side_apply(api, manifest)


def delete(api: client.ApiClient, manifest: dict[str, Any]) -> str:
    """`kubectl delete --ignore-not-found -f` of the object; an API DELETE without the binary."""
    if KUBECTL.exists():
        return _kubectl("delete", manifest, "--ignore-not-found", "--wait=false")
    try:
        _resource(api, manifest).delete(name=manifest["metadata"]["name"])
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    return "deleted"


def _kubectl(verb: str, manifest: dict[str, Any], *extra: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="e2e-apply-") as out:
        out.write(yaml.safe_dump(manifest))
        out.flush()
        result = subprocess.run(
            [str(KUBECTL), verb, "-f", out.name, *extra],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=dict(os.environ),  # KUBECONFIG names the cluster, as for the rest of the suite
            check=False,
        )
    if result.returncode != 0:
        raise AssertionError(f"kubectl {verb} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result.stdout.strip()


def _resource(api: client.ApiClient, manifest: dict[str, Any]) -> Any:
    """The dynamic client's resource for the object's apiVersion and kind (discovered, so it is served)."""
    discovered = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    return discovered.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])


def _server_side_apply(api: client.ApiClient, manifest: dict[str, Any]) -> str:
    _resource(api, manifest).server_side_apply(
        body=manifest, field_manager=FIELD_MANAGER, force_conflicts=True
    )
    return "applied (server side)"


def apply_file(api: client.ApiClient, path: Path, *, server_side: bool = False) -> str:
    """Apply every document of a YAML file (one at a time, as above)."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return "\n".join(apply(api, doc, server_side=server_side) for doc in docs)
