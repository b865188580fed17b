"""The Pod UPDATE guard: only the controller may change the active sidecar's image."""

import json
from typing import Any

import pytest

from webhook import contract
from webhook.config import WebhookConfig
from webhook.guard import review_update
from webhook.inject import inject

CONTROLLER = WebhookConfig().controller_service_account


def injected_pod(active: str = "hotupgrade-a") -> dict[str, Any]:
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    injected = inject(pod, namespace="default", config=WebhookConfig())
    if active == "hotupgrade-b":
        status = json.loads(injected["metadata"]["annotations"][contract.ANNOTATION_STATUS])
        status["active"], status["standby"] = "hotupgrade-b", "hotupgrade-a"
        injected["metadata"]["annotations"][contract.ANNOTATION_STATUS] = json.dumps(status)
    return injected


def with_image(pod: dict[str, Any], name: str, image: str) -> dict[str, Any]:
    updated: dict[str, Any] = json.loads(json.dumps(pod))
    for container in updated["spec"]["containers"]:
        if container["name"] == name:
            container["image"] = image
    return updated


def test_a_user_changing_the_active_image_is_denied_with_the_annotation_to_use() -> None:
    old = injected_pod()
    verdict = review_update(
        old, with_image(old, "hotupgrade-a", "sidecar:2"), username="alice", controller_user=CONTROLLER
    )
    assert not verdict.allowed
    assert verdict.reason == "active-image-change"
    assert contract.ANNOTATION_TARGET_IMAGE in verdict.message
    assert "hotupgrade-a" in verdict.message and "sidecar:2" in verdict.message


def test_the_controller_may_change_the_active_image() -> None:
    old = injected_pod()
    new = with_image(old, "hotupgrade-a", "sidecar:2")
    assert review_update(old, new, username=CONTROLLER, controller_user=CONTROLLER).allowed


def test_the_active_slot_comes_from_the_status_annotation() -> None:
    old = injected_pod(active="hotupgrade-b")
    assert review_update(
        old, with_image(old, "hotupgrade-a", "x:2"), username="alice", controller_user=CONTROLLER
    ).allowed
    assert not review_update(
        old, with_image(old, "hotupgrade-b", "x:2"), username="alice", controller_user=CONTROLLER
    ).allowed


def test_rewriting_the_status_in_the_same_update_does_not_open_a_back_door() -> None:
    old = injected_pod(active="hotupgrade-a")
    new = with_image(injected_pod(active="hotupgrade-b"), "hotupgrade-a", "sidecar:2")
    assert not review_update(old, new, username="alice", controller_user=CONTROLLER).allowed


@pytest.mark.parametrize(
    "change",
    [
        lambda p: with_image(p, "app", "app:2"),
        lambda p: with_image(p, "hotupgrade-b", "sidecar:2"),
        lambda p: {**p, "metadata": {**p["metadata"], "labels": {"x": "y"}}},
    ],
)
def test_everything_else_passes(change: Any) -> None:
    old = injected_pod()
    assert review_update(old, change(old), username="alice", controller_user=CONTROLLER).allowed


@pytest.mark.parametrize("status", [None, "not json", json.dumps({"version": 99})])
def test_pods_without_a_valid_status_pass(status: str | None) -> None:
    old = injected_pod()
    if status is None:
        del old["metadata"]["annotations"][contract.ANNOTATION_STATUS]
    else:
        old["metadata"]["annotations"][contract.ANNOTATION_STATUS] = status
    new = with_image(old, "hotupgrade-a", "sidecar:2")
    assert review_update(old, new, username="alice", controller_user=CONTROLLER).allowed


def test_native_sidecar_active_container_is_guarded() -> None:
    config = WebhookConfig(mode="nativeSidecar")
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    old = inject(pod, namespace="default", config=config)
    new = json.loads(json.dumps(old))
    new["spec"]["initContainers"][0]["image"] = "sidecar:2"
    assert not review_update(old, new, username="alice", controller_user=CONTROLLER).allowed
