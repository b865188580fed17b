"""JSON patches for the controller's writes. Pure.

Every patch pins the resourceVersion the decision was made on (the API server answers 409 Conflict if
the pod changed since) and, for image changes, `test`s the image it replaces, so a stale view fails
instead of clobbering. The record rides in the same patch, so it never disagrees with the pod.
"""

from typing import Any

from controller.actions import Complete, CreatePrePullPod, Fail, SetImage, WaitFor, Withdraw
from controller.keys import (
    ANNOTATION_KUBELET_BACKOFF,
    ANNOTATION_PLANNED_RESTARTS,
    ANNOTATION_STATUS,
    ANNOTATION_SWAP_HOLD,
    ANNOTATION_TARGET_IMAGE,
    ANNOTATION_UPGRADE,
)
from controller.record import UpgradeRecord

JSONPatch = list[dict[str, Any]]


def pointer_token(key: str) -> str:
    """Escape one JSON pointer token (RFC 6901): `~` -> `~0`, `/` -> `~1`."""
    return key.replace("~", "~0").replace("/", "~1")


def annotation_path(key: str) -> str:
    return "/metadata/annotations/" + pointer_token(key)


def _precondition(resource_version: str) -> JSONPatch:
    # A `replace` (not `test`) so that the API server's optimistic concurrency answers 409 Conflict.
    return [{"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}]


def _record_op(record: UpgradeRecord) -> dict[str, Any]:
    return {"op": "add", "path": annotation_path(ANNOTATION_UPGRADE), "value": record.render()}


def patch_for(
    action: SetImage | WaitFor | Fail | Complete | CreatePrePullPod, resource_version: str
) -> JSONPatch:
    """The patch that carries out `action` on a pod last seen at `resource_version` ([] if none)."""
    ops = _precondition(resource_version)
    if isinstance(action, SetImage):
        image_path = f"{action.spec_path}/image"
        ops.append({"op": "test", "path": image_path, "value": action.expect_image})
        ops.append({"op": "replace", "path": image_path, "value": action.image})
        ops.append(_record_op(action.record))
        if action.planned is not None:
            path = annotation_path(ANNOTATION_PLANNED_RESTARTS)
            ops.append({"op": "add", "path": path, "value": action.planned.render()})
        if action.kubelet_backoff is not None:
            path = annotation_path(ANNOTATION_KUBELET_BACKOFF)
            ops.append({"op": "add", "path": path, "value": action.kubelet_backoff.render()})
        return ops
    if isinstance(action, Complete | Fail) and action.status is not None:
        ops.append({"op": "add", "path": annotation_path(ANNOTATION_STATUS), "value": action.status.render()})
    record = action.record
    if record is None:
        return []
    ops.append(_record_op(record))
    return ops


def record_patch(record: UpgradeRecord, resource_version: str) -> JSONPatch:
    """Rewrite only the record, on the pod as last seen. Not a `test` of the annotation: the API server
    compares JSON text, and Go escapes `<`, `>`, `&` and non-ASCII unlike Python (422)."""
    return [*_precondition(resource_version), _record_op(record)]


def target_patch(
    image: str, resource_version: str, *, hold: bool = False, drop_hold: bool = False
) -> JSONPatch:
    """Set the pod's `hotupgrade.io/target-image` (a release starting or retargeting its upgrade), on the
    pod as last seen: the step machine takes it from there; with `hold`, it waits before the swap until
    `lift_patch`; `drop_hold` removes a hold the pod has (for another image). Injected pods always have
    annotations."""
    ops = [
        *_precondition(resource_version),
        {"op": "add", "path": annotation_path(ANNOTATION_TARGET_IMAGE), "value": image},
    ]
    if hold:
        ops.append({"op": "add", "path": annotation_path(ANNOTATION_SWAP_HOLD), "value": image})
    elif drop_hold:
        ops.append({"op": "remove", "path": annotation_path(ANNOTATION_SWAP_HOLD)})
    return ops


def withdraw_patch(action: Withdraw, resource_version: str) -> JSONPatch:
    """Remove the record and the swap hold of a withdrawn upgrade (controller.steps), on the pod as last
    seen; the hold must still name the upgrade's image."""
    hold = annotation_path(ANNOTATION_SWAP_HOLD)
    return [
        *_precondition(resource_version),
        {"op": "test", "path": hold, "value": action.image},
        {"op": "remove", "path": hold},
        {"op": "remove", "path": annotation_path(ANNOTATION_UPGRADE)},
    ]


def release_withdraw_patch(image: str, resource_version: str, *, target: bool, hold: bool) -> JSONPatch:
    """A release withdraws a held upgrade to `image` (controller.rollout.Withdraw), on the pod as last seen:
    remove the target if it names `image`, and the hold when no record of the upgrade is left to drop (else
    the hold stays, so that the step machine knows the upgrade was held, and drops both: withdraw_patch)."""
    ops = _precondition(resource_version)
    for key, wanted in ((ANNOTATION_TARGET_IMAGE, target), (ANNOTATION_SWAP_HOLD, hold)):
        if wanted:
            path = annotation_path(key)
            ops += [{"op": "test", "path": path, "value": image}, {"op": "remove", "path": path}]
    return ops


def lift_patch(image: str, resource_version: str) -> JSONPatch:
    """Remove the pod's swap hold on `image` (its upgrade may swap now), on the pod as last seen."""
    path = annotation_path(ANNOTATION_SWAP_HOLD)
    return [
        *_precondition(resource_version),
        {"op": "test", "path": path, "value": image},
        {"op": "remove", "path": path},
    ]
