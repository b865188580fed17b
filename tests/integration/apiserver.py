"""The real kube-apiserver that integration tests talk to: KUBECONFIG, else the local cluster's admin one.

Without one answering, tests skip, which CI counts as a failure (`make integration` brings it up).
"""

import os
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config

LOCAL_CLUSTER_KUBECONFIG = "/var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig"


def reachable_kubeconfig() -> str:
    """The kubeconfig path, after checking its API server answers; skip the test otherwise."""
    path = os.environ.get("KUBECONFIG") or LOCAL_CLUSTER_KUBECONFIG
    if not Path(path).is_file():
        pytest.skip(f"no kubeconfig at {path}: bring the API server up with `make cluster-up`")
    try:
        api = kube_config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # any failure to reach it means: no API server to test against
        pytest.skip(f"kube-apiserver from {path} not answering: {exc}")
    return path
