"""/validate over real TLS: the guard denies a user's edit of the active image, allows the controller."""

import copy
from typing import Any

import httpx
import pytest

from tests.integration.webhook.admission_helpers import apply, patch_of, response_of, review
from tests.integration.webhook.conftest import load_fixture
from webhook import contract
from webhook.config import WebhookConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONTROLLER = WebhookConfig().controller_service_account


@pytest.fixture
def injected(client: httpx.Client) -> dict[str, Any]:
    """A pod as the webhook injected it (through /mutate, not by hand)."""
    body = load_fixture("create-pod")["review"]
    response = response_of(client.post("/mutate", json=body), body["request"]["uid"])
    pod = apply(body["request"]["object"], patch_of(response))
    pod["metadata"]["namespace"] = "default"
    return pod


def set_image(pod: dict[str, Any], name: str, image: str) -> dict[str, Any]:
    updated = copy.deepcopy(pod)
    for container in updated["spec"]["containers"]:
        if container["name"] == name:
            container["image"] = image
    return updated


def validate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    return response_of(client.post("/validate", json=body), body["request"]["uid"])


def test_a_user_editing_the_active_image_is_denied(client: httpx.Client, injected: dict[str, Any]) -> None:
    new = set_image(injected, "hotupgrade-a", "sidecar-hotupgrade/sidecar:0.2.0")
    response = validate(client, review(new, old=injected, operation="UPDATE", username="alice"))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert contract.ANNOTATION_TARGET_IMAGE in response["status"]["message"]
    assert "hotupgrade-a" in response["status"]["message"]


def test_the_controller_may_edit_the_active_image(client: httpx.Client, injected: dict[str, Any]) -> None:
    new = set_image(injected, "hotupgrade-a", "sidecar-hotupgrade/sidecar:0.2.0")
    response = validate(client, review(new, old=injected, operation="UPDATE", username=CONTROLLER))
    assert response["allowed"] is True and "patch" not in response


def test_a_user_editing_the_standby_image_is_denied(client: httpx.Client, injected: dict[str, Any]) -> None:
    # A sidecar image in the standby slot would start a second agent outside the controller's hand-over.
    new = set_image(injected, "hotupgrade-b", "sidecar-hotupgrade/sidecar:0.2.0")
    response = validate(client, review(new, old=injected, operation="UPDATE", username="alice"))
    assert response["allowed"] is False
    assert "hotupgrade-b" in response["status"]["message"]


@pytest.mark.parametrize(
    "change",
    [
        lambda p: set_image(p, "app", "nginx:1.28"),
        lambda p: {
            **p,
            "metadata": {
                **p["metadata"],
                "annotations": {**p["metadata"]["annotations"], contract.ANNOTATION_TARGET_IMAGE: "s:2"},
            },
        },
    ],
)
def test_other_updates_pass(client: httpx.Client, injected: dict[str, Any], change: Any) -> None:
    response = validate(client, review(change(injected), old=injected, operation="UPDATE", username="alice"))
    assert response["allowed"] is True


def test_creates_and_subresources_pass(client: httpx.Client, injected: dict[str, Any]) -> None:
    assert validate(client, review(injected))["allowed"] is True
    body = review(
        set_image(injected, "hotupgrade-a", "x:2"), old=injected, operation="UPDATE", username="alice"
    )
    body["request"]["subResource"] = "status"
    assert validate(client, body)["allowed"] is True


def test_an_update_without_old_object_is_a_bad_request(
    client: httpx.Client, injected: dict[str, Any]
) -> None:
    http = client.post("/validate", json=review(injected, operation="UPDATE"))
    assert http.status_code == 400 and "oldObject" in http.json()["error"]
