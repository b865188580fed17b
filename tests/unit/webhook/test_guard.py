"""The Pod UPDATE guard: only the controller may change the pair's images or its hotupgrade.io annotations."""

import json
from pathlib import Path
from typing import Any

import pytest

from controller import keys
from webhook import contract
from webhook.config import WebhookConfig
from webhook.guard import USER_ANNOTATIONS, guarded_changes, pair_containers, review_update
from webhook.inject import inject

CONTROLLER = WebhookConfig().controller_service_account
CASES = Path(__file__).parent / "testdata" / "cases"


def injected_pod(active: str = "hotupgrade-a") -> dict[str, Any]:
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    injected = inject(pod, namespace="default", config=WebhookConfig())
    if active == "hotupgrade-b":
        status = json.loads(injected["metadata"]["annotations"][contract.ANNOTATION_STATUS])
        status["active"], status["standby"] = "hotupgrade-b", "hotupgrade-a"
        injected["metadata"]["annotations"][contract.ANNOTATION_STATUS] = json.dumps(status)
    return injected


def copy(pod: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(pod))
    return copied


def with_image(pod: dict[str, Any], name: str, image: str) -> dict[str, Any]:
    updated = copy(pod)
    for key in ("containers", "initContainers"):
        for container in updated["spec"].get(key) or []:
            if container["name"] == name:
                container["image"] = image
    return updated


def with_annotations(pod: dict[str, Any], changes: dict[str, str | None]) -> dict[str, Any]:
    """Annotations set (a string) or removed (None)."""
    updated = copy(pod)
    annotations = updated["metadata"].setdefault("annotations", {})
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return updated


def review(old: dict[str, Any], new: dict[str, Any], user: str = "alice") -> Any:
    return review_update(old, new, username=user, controller_user=CONTROLLER)


def case_review(name: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((CASES / name).read_text())["request"]
    return request


def test_a_user_changing_the_active_image_is_denied_with_the_annotation_to_use() -> None:
    old = injected_pod()
    verdict = review(old, with_image(old, "hotupgrade-a", "sidecar:2"))
    assert not verdict.allowed
    assert verdict.reason == "active-image-change"
    assert contract.ANNOTATION_TARGET_IMAGE in verdict.message
    assert "hotupgrade-a" in verdict.message and "sidecar:2" in verdict.message


def test_the_controller_may_change_the_pair_and_its_annotations() -> None:
    old = injected_pod()
    new = with_image(old, "hotupgrade-a", "sidecar:2")
    assert review(old, new, CONTROLLER).allowed
    assert (
        review(old, with_annotations(new, {"hotupgrade.io/status": None}), CONTROLLER).reason == "controller"
    )
    assert review(old, with_annotations(old, {"hotupgrade.io/upgrade": "{}"}), CONTROLLER).allowed


def test_the_active_slot_comes_from_the_status_annotation() -> None:
    old = injected_pod(active="hotupgrade-b")
    assert review(old, with_image(old, "hotupgrade-b", "x:2")).reason == "active-image-change"
    # The standby is guarded too: a sidecar image there would start a second agent outside the hand-over.
    standby = review(old, with_image(old, "hotupgrade-a", "x:2"))
    assert (standby.allowed, standby.reason) == (False, "pair-image-change")


def test_rewriting_the_status_in_the_same_update_does_not_open_a_back_door() -> None:
    old = injected_pod(active="hotupgrade-a")
    new = with_image(injected_pod(active="hotupgrade-b"), "hotupgrade-a", "sidecar:2")
    verdict = review(old, new)
    assert (verdict.allowed, verdict.reason) == (False, "active-image-change")


def test_case_removing_the_status_annotation_is_denied() -> None:
    request = case_review("guard-remove-status-review.json")
    verdict = review(request["oldObject"], request["object"], request["userInfo"]["username"])
    assert (verdict.allowed, verdict.reason) == (False, "protected-annotation")
    assert contract.ANNOTATION_STATUS in verdict.message and "remove" in verdict.message
    assert review(request["oldObject"], request["object"], CONTROLLER).allowed


def test_case_setting_the_image_after_the_status_is_gone_is_denied() -> None:
    # Neither version carries hotupgrade.io/status: the pair is found by its HOTUPGRADE_SLOT variable.
    request = case_review("guard-then-set-image-review.json")
    old, new = request["oldObject"], request["object"]
    assert contract.ANNOTATION_STATUS not in old["metadata"]["annotations"]
    assert pair_containers(old) == ["hotupgrade-a", "hotupgrade-b"]
    verdict = review(old, new, request["userInfo"]["username"])
    assert (verdict.allowed, verdict.reason) == (False, "pair-image-change")
    assert "registry.example.com/sidecar:9" in verdict.message
    assert review(old, new, CONTROLLER).allowed


@pytest.mark.parametrize(
    "change",
    [
        {"hotupgrade.io/status": None},
        {"hotupgrade.io/status": '{"version":1}'},
        {"hotupgrade.io/upgrade": "{}"},
        {"hotupgrade.io/anything-new": "x"},
    ],
)
def test_controller_annotations_are_guarded_on_every_change(change: dict[str, str | None]) -> None:
    old = injected_pod()
    assert review(old, with_annotations(old, change)).reason == "protected-annotation"


def test_adding_a_status_to_a_pod_that_was_never_injected_is_denied() -> None:
    plain = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    status = injected_pod()["metadata"]["annotations"][contract.ANNOTATION_STATUS]
    fake = with_annotations(plain, {contract.ANNOTATION_STATUS: status})
    assert review(plain, fake).reason == "protected-annotation"


@pytest.mark.parametrize(
    "change",
    [
        lambda p: with_image(p, "app", "app:2"),
        lambda p: {**p, "metadata": {**p["metadata"], "labels": {"x": "y"}}},
        lambda p: {**p, "metadata": {**p["metadata"], "finalizers": []}},
        lambda p: with_annotations(p, {"hotupgrade.io/target-image": "sidecar:2"}),
        lambda p: with_annotations(p, {"hotupgrade.io/abort": "1", "hotupgrade.io/retry": "2"}),
        lambda p: with_annotations(p, {"example.com/owner": "team-a"}),
    ],
)
def test_everything_else_passes(change: Any) -> None:
    old = injected_pod()
    old = with_annotations(old, {"hotupgrade.io/target-image": "sidecar:1"})
    old["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
    verdict = review(old, change(old))
    assert (verdict.allowed, verdict.reason) == (True, "no-guarded-change")


def test_removing_a_user_request_passes() -> None:
    old = with_annotations(injected_pod(), {"hotupgrade.io/target-image": "sidecar:2"})
    assert review(old, with_annotations(old, {"hotupgrade.io/target-image": None})).allowed


@pytest.mark.parametrize("status", [None, "not json", json.dumps({"version": 99})])
def test_the_pair_is_guarded_whatever_the_status_says(status: str | None) -> None:
    old = injected_pod()
    if status is None:
        del old["metadata"]["annotations"][contract.ANNOTATION_STATUS]
    else:
        old["metadata"]["annotations"][contract.ANNOTATION_STATUS] = status
    new = with_image(old, "hotupgrade-a", "sidecar:2")
    assert review(old, new).reason == "pair-image-change"


def test_native_sidecar_pair_is_guarded() -> None:
    config = WebhookConfig(mode="nativeSidecar")
    pod = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    old = inject(pod, namespace="default", config=config)
    assert review(old, with_image(old, "hotupgrade-a", "sidecar:2")).reason == "active-image-change"
    assert review(old, with_image(old, "hotupgrade-b", "sidecar:2")).reason == "pair-image-change"


def test_image_changes_are_reported_before_annotation_changes() -> None:
    old = injected_pod()
    new = with_annotations(with_image(old, "hotupgrade-a", "sidecar:2"), {"hotupgrade.io/status": None})
    assert [c.kind for c in guarded_changes(old, new)] == ["annotation", "image"]
    assert review(old, new).reason == "active-image-change"


def test_the_controllers_request_annotations_are_the_ones_users_may_write() -> None:
    assert {keys.ANNOTATION_TARGET_IMAGE, keys.ANNOTATION_RETRY, keys.ANNOTATION_ABORT} == USER_ANNOTATIONS
    assert keys.ANNOTATION_STATUS not in USER_ANNOTATIONS and keys.ANNOTATION_UPGRADE not in USER_ANNOTATIONS
