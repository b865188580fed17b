"""The Pod UPDATE guard as a pure function: only the upgrade controller may touch what it owns.

What it owns on an injected pod:
- the images of both containers of the pair. A direct edit of the active container's image makes the
  kubelet cold-restart it, which kills the Envoy that owns the listeners; an edit of the standby's starts
  a second agent outside the controller's choreography. The controller swaps images only in order.
- every `hotupgrade.io/*` annotation except the requests users write (`USER_ANNOTATIONS`): the status
  annotation is the memory of the injection and of which slot serves, the upgrade record is the
  controller's. Removing one would hide the pod from the guard and the controller.

A change may be split across updates (drop the status first, then edit the image), so the pair is found
by what no update can change: the `HOTUPGRADE_SLOT` environment variable of its containers (a container's
env is immutable), read from the old object. The status annotation of either version only names the
active slot for the message. The chart's CEL match conditions send the API server's UPDATEs here only
when they change one of these things (charts/sidecar-hotupgrade/templates/webhookconfigurations.yaml,
kept equivalent to `guarded_changes` by tests). No I/O.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook import contract
from webhook.injection_status import InjectionStatus, InvalidStatusError, parse_status

ANNOTATION_PREFIX = "hotupgrade.io/"
# Requests anyone with pod update rights may write: the target image (docs/contract.md), and the
# controller's retry and abort requests (controller/keys.py; the `hotupgrade` CLI writes them as the user).
USER_ANNOTATIONS = frozenset({contract.ANNOTATION_TARGET_IMAGE, "hotupgrade.io/retry", "hotupgrade.io/abort"})


@dataclass(frozen=True)
class Verdict:
    """The guard's answer; `reason` is a short token for metrics, `message` is for the user."""

    allowed: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Change:
    """One guarded change: a protected annotation (`before`/`after` None when absent) or a pair image."""

    kind: str  # "annotation" or "image"
    name: str  # annotation key or container name
    before: object
    after: object


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return annotations if isinstance(annotations, Mapping) else {}


def _status(pod: Mapping[str, Any]) -> InjectionStatus | None:
    raw = _annotations(pod).get(contract.ANNOTATION_STATUS)
    if not isinstance(raw, str):
        return None
    try:
        return parse_status(raw)
    except InvalidStatusError:
        return None


def _containers(pod: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    spec = pod.get("spec")
    if not isinstance(spec, Mapping):
        return
    for key in ("containers", "initContainers"):
        containers = spec.get(key)
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, Mapping) and isinstance(container.get("name"), str):
                yield container


def container_images(pod: Mapping[str, Any]) -> dict[str, object]:
    """Image of every container and init container, by name."""
    return {container["name"]: container.get("image") for container in _containers(pod)}


def pair_containers(pod: Mapping[str, Any]) -> list[str]:
    """Names of the containers that carry the contract's HOTUPGRADE_SLOT variable: the injected pair."""
    names = []
    for container in _containers(pod):
        env = container.get("env")
        entries = env if isinstance(env, list) else []
        if any(isinstance(e, Mapping) and e.get("name") == contract.ENV_SLOT for e in entries):
            names.append(container["name"])
    return names


def protected(key: object) -> bool:
    """Whether an annotation key belongs to the controller."""
    return isinstance(key, str) and key.startswith(ANNOTATION_PREFIX) and key not in USER_ANNOTATIONS


def guarded_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every change this update makes to what only the controller may change (empty: nothing guarded)."""
    before, after = _annotations(old), _annotations(new)
    changes = [
        Change("annotation", key, before.get(key), after.get(key))
        for key in sorted({*before, *after}, key=str)
        if protected(key) and before.get(key) != after.get(key)
    ]
    old_images, new_images = container_images(old), container_images(new)
    changes += [
        Change("image", name, old_images[name], new_images[name])
        for name in pair_containers(old)
        if name in new_images and old_images[name] != new_images[name]
    ]
    return changes


def _denial(change: Change, active: set[str]) -> Verdict:
    if change.kind == "annotation":
        verb = "remove" if change.after is None else "add" if change.before is None else "change"
        return Verdict(
            False,
            "protected-annotation",
            f"only the upgrade controller may {verb} the annotation {change.name}: it is its record of the "
            f"sidecar pair; to upgrade set {contract.ANNOTATION_TARGET_IMAGE}, to stop an upgrade set "
            "hotupgrade.io/abort",
        )
    role = "active" if change.name in active else "pair"
    return Verdict(
        False,
        f"{role}-image-change",
        f"changing the image of the {role} sidecar container {change.name!r} from {change.before!r} to "
        f"{change.after!r} would restart a sidecar outside the upgrade controller's hand-over and drop "
        f"connections; set the pod annotation {contract.ANNOTATION_TARGET_IMAGE}={change.after} instead and "
        "the upgrade controller will hot-upgrade the sidecar without dropping a request",
    )


def review_update(
    old: Mapping[str, Any], new: Mapping[str, Any], *, username: str, controller_user: str
) -> Verdict:
    """Deny a guarded change (pair images, controller annotations) unless `username` is the controller."""
    changes = guarded_changes(old, new)
    if not changes:
        return Verdict(True, "no-guarded-change")
    if username == controller_user:
        return Verdict(True, "controller")
    # The active container named by either version: editing the annotation does not open a back door.
    active = {status.active for status in (_status(old), _status(new)) if status is not None}
    # Image changes first: they are what drops connections, so they are what the user should read about.
    first = sorted(changes, key=lambda change: (change.kind != "image", change.name not in active))[0]
    return _denial(first, active)
