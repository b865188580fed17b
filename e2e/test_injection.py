"""Injection through the real API server: opted-in pods get the pair, opted-out pods do not."""

from __future__ import annotations

import urllib.request

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from e2e import conftest
from webhook import contract

pytestmark = pytest.mark.timeout(600)


def test_deployment_pod_gets_the_pair_and_serves(api: client.ApiClient, namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "demo")
    names = [c["name"] for c in pod["spec"]["containers"]]
    status = upgrade.status_of(pod)
    assert set(status.slots) <= set(names)
    assert kube.container_image(pod, status.active) == conftest.SIDECAR_IMAGES[0]
    assert kube.container_image(pod, status.standby) == conftest.EMPTY_IMAGE
    # Both sidecar containers run; the app container was never restarted.
    for name in names:
        cs = kube.container_status(pod, name)
        assert "running" in cs["state"], (name, cs)
        assert cs["restartCount"] == 0, (name, cs)
    # Traffic from the host through the sidecar's listener reaches the app.
    url = f"http://{pod['status']['podIP']}:{contract.LISTEN_PORT}/"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        assert resp.read().startswith(b"ok ")
    active = upgrade.agent_status(pod["status"]["podIP"], status.slots[status.active])
    assert active is not None and active["role"] == "active" and active["phase"] == "serving", active


def test_opted_out_pod_is_not_injected(api: client.ApiClient, namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "optout", labels={contract.LABEL_POD_INJECT: "false"})
    assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
    assert contract.ANNOTATION_STATUS not in (pod["metadata"].get("annotations") or {})


def test_namespace_not_opted_in_is_not_injected(
    api: client.ApiClient, suite_release: release.Release
) -> None:
    # In the release's scope (so its webhook sees the pod), but without the injection label.
    with conftest.scoped_namespace(api, suite_release, {}) as ns:
        [pod] = conftest.deploy_and_wait(api, ns, "plain")
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
