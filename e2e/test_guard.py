"""The validating guard: a direct edit of the active sidecar's image is denied by the API server; with the
webhook scaled to zero (failurePolicy Fail) only what it guards is refused, while label edits and the Job
controller's finalizer removal go through (the chart's match conditions never send them to it)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from e2e import conftest
from webhook import contract

pytestmark = pytest.mark.timeout(600)


def test_direct_edit_of_active_sidecar_image_is_denied(api: client.ApiClient, namespace: str) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "guarded")
    status = upgrade.status_of(pod)
    ops = upgrade.set_image_ops(pod, status.active, conftest.SIDECAR_IMAGES[0], conftest.SIDECAR_IMAGES[1])
    with pytest.raises(client.ApiException) as denied:
        upgrade.json_patch(api, namespace, pod["metadata"]["name"], ops)
    assert denied.value.status in (400, 403), denied.value
    assert "denied the request" in str(denied.value.body), denied.value.body
    after = kube.get_pod(api, namespace, pod["metadata"]["name"])
    assert kube.container_image(after, status.active) == conftest.SIDECAR_IMAGES[0]
    assert kube.container_status(after, status.active)["restartCount"] == 0


# The Job's work waits for the test's go: one TCP connection on this port of the pod IP, then exits 0.
GO_PORT = 7000
WAIT_FOR_GO = f"""
import socket
socket.create_server(("0.0.0.0", {GO_PORT})).accept()
"""
JOB_TIMEOUT = 240.0


def refused_while_down(call: Callable[[], object]) -> None:
    """`call` fails because the API server cannot reach the guard (failurePolicy Fail)."""
    with pytest.raises(client.ApiException) as refused:
        call()
    body = str(refused.value.body)
    assert refused.value.status == 500 and "failed calling webhook" in body, refused.value
    assert "guard.hotupgrade.io" in body, body


def go(pod_ip: str) -> bool:
    try:
        socket.create_connection((pod_ip, GO_PORT), timeout=2).close()
    except OSError:
        return False
    return True


def test_with_the_webhook_down_only_what_the_guard_guards_is_refused(
    api: client.ApiClient, namespace: str, suite_release: release.Release
) -> None:
    core = kube.core(api)
    kube.batch(api).create_namespaced_job(namespace, conftest.demo_job("tracked", WAIT_FOR_GO))

    def working() -> kube.Pod | None:
        pod = conftest.job_pod(api, namespace, "tracked")
        return pod if "running" in kube.container_status(pod, "work").get("state", {}) else None

    pod = kube.wait_until("the Job's work running", working, conftest.POD_READY_TIMEOUT, interval=0.5)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    status = upgrade.status_of(pod)
    assert "batch.kubernetes.io/job-tracking" in (pod["metadata"].get("finalizers") or []), pod["metadata"]
    index = [c["name"] for c in pod["spec"]["initContainers"]].index(status.active)
    image_path = f"/spec/initContainers/{index}/image"
    with release.webhook_down(api, suite_release, namespace):
        down = time.monotonic()
        # Not guarded, so never sent to the webhook: a user's label edit.
        core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {"edited": "while-webhook-down"}}})
        assert kube.get_pod(api, namespace, name)["metadata"]["labels"]["edited"] == "while-webhook-down"
        # Guarded: dropping the status annotation, and changing the pair's image.
        drop = {"metadata": {"annotations": {contract.ANNOTATION_STATUS: None}}}
        refused_while_down(lambda: core.patch_namespaced_pod(name, namespace, drop))
        set_image = [
            {"op": "test", "path": image_path, "value": conftest.SIDECAR_IMAGES[0]},
            {"op": "replace", "path": image_path, "value": conftest.SIDECAR_IMAGES[1]},
        ]
        refused_while_down(lambda: upgrade.json_patch(api, namespace, name, set_image))
        # The work ends; the Job controller counts the pod and takes its tracking finalizer off.
        kube.wait_until("the Job's work takes the go", lambda: go(ip), 60)
        job = conftest.wait_job_succeeded(api, namespace, "tracked", JOB_TIMEOUT)
        done = kube.get_pod(api, namespace, name)
        down_s = round(time.monotonic() - down, 1)
    finalizers = done["metadata"].get("finalizers") or []
    figures = {
        "webhook_down_s": down_s,
        "succeeded": job["status"].get("succeeded"),
        "phase": done["status"].get("phase"),
        "finalizers": finalizers,
    }
    print(json.dumps({"guard_webhook_down": figures}))
    assert job["status"]["succeeded"] == 1 and done["status"]["phase"] == "Succeeded", figures
    assert "batch.kubernetes.io/job-tracking" not in finalizers, figures
    final = kube.get_pod(api, namespace, name)
    assert upgrade.status_of(final) == status, "the status annotation survived"
    assert final["spec"]["initContainers"][index]["image"] == conftest.SIDECAR_IMAGES[0]
