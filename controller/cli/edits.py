"""What `hotupgrade rollout|pause|resume|rollback NAME` writes to a SidecarRelease. Pure: the release as
read in, the release to create or the JSON patch to send out.

The CLI edits spec only and reads status; the controller acts. So each command is an edit of a deep copy
of the spec, diffed against the original (STYLE.md, "Diff, don't hand-write patches"), behind a
`replace` of metadata.resourceVersion: a release edited by someone else meanwhile answers 409 and the
shell reads it again and decides again, so a rollback never sends an image chosen from a stale status.
Values are passed as given (`25%` stays a string): the API server's schema and CEL rules judge them.
"""

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from controller.observed import same_image
from controller.release import API_VERSION, KIND
from controller.selector import LabelSelectorJSON

JSONPatch = list[dict[str, Any]]


class EditRefusedError(ValueError):
    """The edit cannot be made to this release; the message says why and what to do instead."""


@dataclass(frozen=True)
class RolloutRequest:
    """`hotupgrade rollout NAME --image ...`: the fields given; None leaves the release's value alone.

    `namespace_selector` None with `all_namespaces` False: keep (edit) or refuse (create); a new release
    must say which namespaces, as a cluster-wide one by accident would move every injected pod."""

    name: str
    image: str
    selector: LabelSelectorJSON | None = None
    namespace_selector: LabelSelectorJSON | None = None
    all_namespaces: bool = False
    strategy: Mapping[str, int | str] = field(default_factory=dict)  # maxUnavailable, partition, ...
    priority: int | None = None
    empty_image: str | None = None


def int_or_percent(text: str) -> int | str:
    """A flag value for an IntOrString field: digits are a count, anything else goes as written."""
    stripped = text.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() else stripped


def _apply(spec: dict[str, Any], request: RolloutRequest) -> None:
    spec["image"] = request.image
    if request.selector is not None:
        spec["selector"] = dict(request.selector)
    if request.all_namespaces:
        spec.pop("namespaceSelector", None)
    elif request.namespace_selector is not None:
        spec["namespaceSelector"] = dict(request.namespace_selector)
    if request.strategy:
        spec["strategy"] = {**(spec.get("strategy") or {}), **request.strategy}
    if request.priority is not None:
        spec["priority"] = request.priority
    if request.empty_image is not None:
        spec["emptyImage"] = request.empty_image


def new_release(request: RolloutRequest) -> dict[str, Any]:
    """The SidecarRelease to create; EditRefusedError if the request does not say which pods."""
    if request.selector is None:
        raise EditRefusedError(
            f"no SidecarRelease {request.name}: to create it, say which pods with -l SELECTOR "
            "(-l '' selects every injected pod of the namespaces)"
        )
    if request.namespace_selector is None and not request.all_namespaces:
        raise EditRefusedError(
            f"no SidecarRelease {request.name}: to create it, say which namespaces with -n NAMESPACE "
            "(repeatable), --namespace-selector SELECTOR, or -A for every namespace"
        )
    spec: dict[str, Any] = {}
    _apply(spec, request)
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": request.name}, "spec": spec}


def rollout_edit(current: Mapping[str, Any], request: RolloutRequest) -> dict[str, Any]:
    """The release with the request's fields set (others as they are)."""
    edited = copy.deepcopy(dict(current))
    spec = edited.setdefault("spec", {})
    _apply(spec, request)
    return edited


def paused_edit(current: Mapping[str, Any], *, paused: bool) -> dict[str, Any]:
    """The release with spec.strategy.paused set (pause: true; resume: false)."""
    edited = copy.deepcopy(dict(current))
    strategy = edited.setdefault("spec", {}).setdefault("strategy", {})
    strategy["paused"] = paused
    return edited


def rollback_candidates(current: Mapping[str, Any]) -> tuple[str, ...]:
    """Images to roll back to, most recent first: the image status was written for, if spec moved on
    since (an edit the controller has not seen yet), then status.previousImages; never spec.image."""
    spec_image = str((current.get("spec") or {}).get("image", ""))
    status = current.get("status") or {}
    candidates: list[str] = []
    if isinstance(status.get("image"), str) and status["image"]:
        candidates.append(status["image"])
    previous = status.get("previousImages") or []
    candidates += [p for p in previous if isinstance(p, str) and p]
    out: list[str] = []
    for image in candidates:
        if not same_image(image, spec_image) and image not in out:
            out.append(image)
    return tuple(out)


def rollback_edit(current: Mapping[str, Any], *, to: str | None = None) -> dict[str, Any]:
    """The release with spec.image set back to the most recent previous image (or `to`, which must be
    one of them). EditRefusedError when status records none: nothing to go back to."""
    name = (current.get("metadata") or {}).get("name")
    candidates = rollback_candidates(current)
    if not candidates:
        image = (current.get("spec") or {}).get("image")
        raise EditRefusedError(
            f"SidecarRelease {name} has no previous image to roll back to: status.previousImages is "
            f"empty (its pods have only run {image}, or the controller has not written its status yet); "
            f"to move to another image, use `hotupgrade rollout {name} --image IMAGE`"
        )
    if to is not None and to not in candidates:
        raise EditRefusedError(
            f"{to} is not a previous image of SidecarRelease {name} (status.previousImages: "
            f"{', '.join(candidates)}); to move to it anyway, use `hotupgrade rollout {name} --image {to}`"
        )
    edited = copy.deepcopy(dict(current))
    edited.setdefault("spec", {})["image"] = to if to is not None else candidates[0]
    return edited


def spec_patch(current: Mapping[str, Any], edited: Mapping[str, Any]) -> JSONPatch:
    """The JSON patch from `current`'s spec to `edited`'s, pinned to `current`'s resourceVersion; []
    when the spec is unchanged (nothing to write: the generation stays, so does the status)."""
    ops: JSONPatch = jsonpatch.make_patch(
        dict(current.get("spec") or {}), dict(edited.get("spec") or {})
    ).patch
    if not ops:
        return []
    version = str((current.get("metadata") or {}).get("resourceVersion", ""))
    # A `replace` (not `test`) so that the API server's optimistic concurrency answers 409 Conflict
    # (as controller.patches pins pod writes).
    pinned: JSONPatch = [{"op": "replace", "path": "/metadata/resourceVersion", "value": version}]
    return pinned + [_under_spec(op) for op in ops]


def _under_spec(op: dict[str, Any]) -> dict[str, Any]:
    """An op of the spec's diff addressed in the whole release (`move`/`copy` carry a `from` too)."""
    moved = {**op, "path": "/spec" + op["path"]}
    if "from" in op:
        moved["from"] = "/spec" + op["from"]
    return moved
