"""The validating guard: a direct edit of the active sidecar's image is denied by the API server."""

from __future__ import annotations

import pytest
from kubernetes import client

from e2e import conftest, kube, upgrade

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
