"""The Pod UPDATE guard as a pure function: may this update change the active sidecar's image?

A direct edit of the active container's image makes the kubelet cold-restart it, which kills the Envoy
that owns the listeners and drops connections. Only the upgrade controller may do that (it swaps slots
first). Everything else passes. No I/O.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook import contract
from webhook.injection_status import InjectionStatus, InvalidStatusError, parse_status


@dataclass(frozen=True)
class Verdict:
    """The guard's answer; `reason` is a short token for metrics, `message` is for the user."""

    allowed: bool
    reason: str
    message: str = ""


def _status(pod: Mapping[str, Any]) -> InjectionStatus | None:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    raw = annotations.get(contract.ANNOTATION_STATUS) if isinstance(annotations, Mapping) else None
    if not isinstance(raw, str):
        return None
    try:
        return parse_status(raw)
    except InvalidStatusError:
        return None


def container_images(pod: Mapping[str, Any]) -> dict[str, object]:
    """Image of every container and init container, by name."""
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return {}
    images: dict[str, object] = {}
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        if not isinstance(containers, list):
            continue
        for container in containers:
            if isinstance(container, Mapping) and isinstance(container.get("name"), str):
                images[container["name"]] = container.get("image")
    return images


def review_update(
    old: Mapping[str, Any], new: Mapping[str, Any], *, username: str, controller_user: str
) -> Verdict:
    """Deny an image change of the active sidecar container unless `username` is the controller."""
    statuses = [status for status in (_status(old), _status(new)) if status is not None]
    if not statuses:
        return Verdict(True, "not-injected")
    if username == controller_user:
        return Verdict(True, "controller")
    old_images, new_images = container_images(old), container_images(new)
    # The active container named by either version: editing the annotation does not open a back door.
    for active in sorted({status.active for status in statuses}):
        before, after = old_images.get(active), new_images.get(active)
        if active in old_images and active in new_images and before != after:
            message = (
                f"changing the image of the active sidecar container {active!r} from {before!r} to "
                f"{after!r} would restart its Envoy and drop connections; set the pod annotation "
                f"{contract.ANNOTATION_TARGET_IMAGE}={after} instead and the upgrade controller will "
                "hot-upgrade the sidecar without dropping a request"
            )
            return Verdict(False, "active-image-change", message)
    return Verdict(True, "no-active-image-change")
