"""Fixtures for the xDS test server: the binary, a server per test, and a pod whose Envoy it configures.

Envoy runs in a pod of the harness (its own network namespace, the app beside it) with a bootstrap that
holds only the ADS cluster; the server runs on the host and listens on the pod's host-side veth address.
Captured output (container and server logs) is shown for failing tests only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import contract
from localcluster.xds import ensure_binary
from podharness import envoyproc
from podharness.pod import Container, Pod
from podharness.sidecar import UPSTREAM_PORT
from podharness.xds import ControlPlane
from podharness.xdsconfig import ads_bootstrap

NODE = "xds-test"
SECOND_UPSTREAM_PORT = 8002


@pytest.fixture(scope="session")
def xds_binary() -> Path:
    """Built once per cache key; `make integration` builds it before pytest starts (mk/xds.mk)."""
    return ensure_binary()


@pytest.fixture
def control_plane(tmp_path: Path, xds_binary: Path) -> Iterator[ControlPlane]:
    """A server listening on 127.0.0.1, for tests without a pod."""
    with ControlPlane(tmp_path / "xds", binary=xds_binary) as server:
        yield server
    print(f"----- xds-server -----\n{server.logs()[-20000:]}")


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    """A pod with the app (HTTP upstream on UPSTREAM_PORT) running and no Envoy yet."""
    if os.geteuid() != 0:
        pytest.skip("the pod harness needs root: network namespaces, mount namespaces, bind mounts")
    created = Pod(tmp_path / "pod", run_dir_mount=contract.RUN_DIR, label="xds")
    try:
        created.create()
        start_upstream(created, "app", UPSTREAM_PORT)
        yield created
    finally:
        for name, container in created.containers.items():
            print(f"----- container {name} -----\n{container.logs()[-20000:]}")
        created.close()


@pytest.fixture
def pod_control_plane(tmp_path: Path, xds_binary: Path, pod: Pod) -> Iterator[ControlPlane]:
    """A server the pod's Envoy reaches over the veth pair, like a control-plane Service."""
    with ControlPlane(tmp_path / "xds", ads_host=pod.addresses.host_ip, binary=xds_binary) as server:
        yield server
    print(f"----- xds-server -----\n{server.logs()[-20000:]}")


def start_upstream(pod: Pod, name: str, port: int) -> Container:
    """An HTTP app container on 127.0.0.1:port inside the pod."""
    container = pod.container(name)
    container.start([sys.executable, "-m", "podharness.upstream", "--http-port", str(port)], {})
    pod.wait_port(port, timeout=30)
    return container


def start_envoy(pod: Pod, xds_address: tuple[str, int] | str, *, node: str = NODE) -> Container:
    """Envoy (epoch 0) in container "envoy" with an ADS-only bootstrap pointing at xds_address."""
    bootstrap = ads_bootstrap(
        node_id=node, node_cluster="harness", admin_port=contract.ADMIN_PORT, xds_address=xds_address
    )
    path = pod.base / "envoy-xds.json"
    path.write_text(json.dumps(bootstrap, indent=1))
    container = pod.container("envoy")
    container.start(envoyproc.envoy_argv(path, epoch=0, drain_seconds=2, parent_shutdown_seconds=3), {})
    return container
