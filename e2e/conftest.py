"""Fixtures of the e2e suite: a cluster from KUBECONFIG, the chart installed once per session (its
in-cluster webhook and controller are the ones every test talks to, and they see only the suite's own
namespaces), a fresh opted-in namespace per test, and the demo workload."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from clusterkit import kube, release

# The suite's settings and workload live in clusterkit.suite (the benches use them too); the tests
# read them through this module (__all__).
from clusterkit.suite import (
    BROKEN_IMAGE,
    DEMO_IMAGE,
    DRAIN_SECONDS,
    EMPTY_IMAGE,
    IMAGES,
    PARENT_SHUTDOWN_SECONDS,
    POD_READY_TIMEOUT,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    SIDECAR_IMAGES,
    UPGRADE_TIMEOUT,
    chart_values,
    demo_deployment,
    deploy_and_wait,
    fresh_release,
    grant_pulls,
    has_default_sa,
    namespace_exists,
    scoped_namespace,
)

# The suite-wide rule applies here too: in CI a skipped test is a failure.
from tests.conftest import pytest_runtest_logreport  # noqa: F401
from webhook import contract

__all__ = [  # re-exported: the tests read the suite's settings and workload through this module
    "BROKEN_IMAGE",
    "DEMO_IMAGE",
    "DRAIN_SECONDS",
    "EMPTY_IMAGE",
    "IMAGES",
    "PARENT_SHUTDOWN_SECONDS",
    "POD_READY_TIMEOUT",
    "RESTRICTED_CONTAINER_SECURITY",
    "RESTRICTED_POD_SECURITY",
    "SIDECAR_IMAGES",
    "UPGRADE_TIMEOUT",
    "chart_values",
    "demo_deployment",
    "deploy_and_wait",
    "fresh_release",
    "grant_pulls",
    "has_default_sa",
    "namespace_exists",
    "scoped_namespace",
]

# The session's release; overridable for sharing a cluster with another run of the suite.
SUITE_RELEASE = release.Release(
    os.environ.get("E2E_RELEASE", "hu-e2e"), os.environ.get("E2E_RELEASE_NAMESPACE", "hotupgrade-e2e")
)


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


@dataclass
class NamespacePool:
    """Names of the per-test namespaces, fixed before the session release is installed: its controller
    watches exactly these (on a shared cluster it must never act on anyone else's pods)."""

    names: tuple[str, ...]
    used: int = 0

    def take(self) -> str:
        if self.used == len(self.names):
            raise AssertionError(f"all {len(self.names)} namespaces collected for this session are in use")
        self.used += 1
        return self.names[self.used - 1]


@pytest.fixture(scope="session")
def namespace_pool(request: pytest.FixtureRequest) -> NamespacePool:
    """One namespace name per collected test that asks for `namespace`, unique to this session."""
    count = sum("namespace" in getattr(item, "fixturenames", ()) for item in request.session.items)
    count = max(count, 1)  # never empty: the chart reads no namespaces as "watch every namespace"
    run = uuid.uuid4().hex[:6]
    return NamespacePool(tuple(f"hu-e2e-{run}-{index}" for index in range(count)))


@pytest.fixture(scope="session")
def suite_release(
    api: client.ApiClient, workdir: Path, namespace_pool: NamespacePool
) -> Iterator[release.Release]:
    """The chart installed for the session: its webhook injects and guards, its controller (two
    replicas, one leader) upgrades in the pool's namespaces. A leftover of an aborted run is
    uninstalled first, so the pods always run the images just imported. Uninstalled at the end."""
    values_file = workdir / "suite-values.yaml"
    values = chart_values(SUITE_RELEASE, watch_namespaces=namespace_pool.names)
    # One webhook replica serves a session (nothing rolls it) and spares a pod on a small machine; the
    # controller keeps two, so a killed leader is followed the way it is on users' clusters.
    values["webhook"] = {"replicas": 1}
    values_file.write_text(yaml.safe_dump(values))
    with fresh_release(api, SUITE_RELEASE, values_file) as installed:
        yield installed


@contextlib.contextmanager
def module_release(
    api: client.ApiClient,
    workdir: Path,
    of: release.Release,
    *,
    app_namespace: str,
    injection: dict[str, Any],
) -> Iterator[release.Release]:
    """A release of a test module's own: the suite's values with `injection` merged in, one webhook and one
    controller replica (leader election works the same with one candidate), watching `app_namespace` only."""
    values: dict[str, Any] = chart_values(of, watch_namespaces=(app_namespace,))
    values["injection"].update(injection)
    values["webhook"] = {"replicas": 1}
    values["controller"]["replicas"] = 1
    values_file = workdir / f"{of.name}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    with fresh_release(api, of, values_file) as installed:
        yield installed


@pytest.fixture
def namespace(
    api: client.ApiClient, suite_release: release.Release, namespace_pool: NamespacePool
) -> Iterator[str]:
    """A fresh namespace opted in to injection, seen by the session release's webhook and controller;
    deleted (not waited for) after the test."""
    labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
    with scoped_namespace(api, suite_release, labels, name=namespace_pool.take()) as name:
        yield name


def demo_job(name: str, script: str) -> dict[str, Any]:
    """A Job of one pod (restartPolicy Never, no retry) whose container `work` runs the Python `script`
    in the demo app's image."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "work",
                            "image": DEMO_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/usr/bin/python3", "-c", script],
                        }
                    ],
                },
            },
        },
    }


def job_pod(api: client.ApiClient, namespace: str, name: str) -> kube.Pod:
    """The one pod of Job `name`, once the Job controller created it."""
    selector = f"batch.kubernetes.io/job-name={name}"

    def found() -> kube.Pod | None:
        pods = kube.list_pods(api, namespace, selector)
        assert len(pods) <= 1, f"backoffLimit 0 and no failure, yet {len(pods)} pods"
        return pods[0] if pods else None

    return kube.wait_until(f"a pod of Job {namespace}/{name}", found, POD_READY_TIMEOUT, interval=0.5)


def wait_job_succeeded(api: client.ApiClient, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The Job (JSON) once `status.succeeded` is 1; fails at once when its pod failed."""

    def done() -> dict[str, Any] | None:
        resp = kube.batch(api).read_namespaced_job(name, namespace, _preload_content=False)
        job: dict[str, Any] = json.loads(resp.data)
        status = job.get("status") or {}
        assert not status.get("failed"), f"Job {name} failed: {status}"
        return job if status.get("succeeded") == 1 else None

    return kube.wait_until(f"Job {namespace}/{name} succeeded", done, timeout, interval=0.5)
