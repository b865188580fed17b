"""The SidecarRelease custom resource (hotupgrade.io/v1alpha1): one object says which sidecar image a set of
pods runs and how fast the fleet moves to it (issue 14; the CRD is charts/sidecar-hotupgrade/crds/).

TypedDicts for what crosses the wire, frozen dataclasses inside (as controller.record). Pure: parsing,
rendering and which release governs a pod (`owning_release`, the one rule the controller's planner and the
webhook's injection both follow); the API server has already applied the CRD's schema and CEL rules, and
`parse_release` checks again so a release from an older CRD or a hand-made document fails with the field
it is about.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict, TypeGuard

from releaseapi.apitime import format_time, parse_time
from releaseapi.imageref import is_reference
from releaseapi.selector import EVERYTHING, LabelSelector, LabelSelectorJSON, parse_selector

GROUP = "hotupgrade.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SidecarRelease"
PLURAL = "sidecarreleases"
SHORT_NAME = "sr"
PREVIOUS_IMAGES_LIMIT = 10  # as Kruise's SidecarSet revisionHistoryLimit default
DEFAULT_MAX_UNAVAILABLE = 1  # Kruise SidecarSet's default
DEFAULT_MAX_FAILURES = 1

_PERCENT = re.compile(r"^(0|[1-9][0-9]*)%$")  # intstr's percent: an integer and `%`, nothing else


class InvalidReleaseError(ValueError):
    """The document is not a SidecarRelease this version understands; the message names the field."""


class ConditionType(StrEnum):
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    COMPLETE = "Complete"
    DEGRADED = "Degraded"


class StrategyJSON(TypedDict, total=False):
    maxUnavailable: int | str
    partition: int | str
    paused: bool
    maxFailures: int


class ReleaseSpecJSON(TypedDict):
    selector: LabelSelectorJSON
    image: str
    namespaceSelector: NotRequired[LabelSelectorJSON]
    emptyImage: NotRequired[str]
    strategy: NotRequired[StrategyJSON]
    priority: NotRequired[int]


class ConditionJSON(TypedDict):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class OverlapJSON(TypedDict):
    release: str
    priority: int
    pods: int


class ReleaseStatusJSON(TypedDict, total=False):
    observedGeneration: int
    image: str
    matchedPods: int
    updatedPods: int
    readyPods: int
    updatedReadyPods: int
    upgradingPods: int
    failedPods: int
    previousImages: list[str]
    overlaps: list[OverlapJSON]
    conditions: list[ConditionJSON]


@dataclass(frozen=True)
class IntOrPercent:
    """An intstr.IntOrString as Kubernetes strategies use it: a count, or a percentage of a total."""

    value: int
    percent: bool = False

    def scaled(self, total: int, *, round_up: bool) -> int:
        """The count for `total` pods (intstr.GetScaledValueFromIntOrPercent, integer arithmetic)."""
        if not self.percent:
            return self.value
        product = self.value * total
        return -(-product // 100) if round_up else product // 100

    def to_json(self) -> int | str:
        return f"{self.value}%" if self.percent else self.value


@dataclass(frozen=True)
class Strategy:
    """How fast the fleet moves: see docs/sidecarrelease.md for each field's exact arithmetic."""

    max_unavailable: IntOrPercent = IntOrPercent(DEFAULT_MAX_UNAVAILABLE)
    partition: IntOrPercent = IntOrPercent(0)
    paused: bool = False
    max_failures: int = DEFAULT_MAX_FAILURES


@dataclass(frozen=True)
class ReleaseSpec:
    """Which pods (namespaceSelector AND selector), the image they run, how fast, who wins overlaps."""

    selector: LabelSelector
    image: str
    namespace_selector: LabelSelector = EVERYTHING
    empty_image: str | None = None
    strategy: Strategy = Strategy()
    priority: int = 0


@dataclass(frozen=True)
class Condition:
    """A metav1.Condition; `since` is its lastTransitionTime."""

    type: ConditionType
    status: bool
    reason: str
    message: str
    since: datetime
    observed_generation: int

    def to_json(self) -> ConditionJSON:
        return ConditionJSON(
            type=str(self.type),
            status="True" if self.status else "False",
            reason=self.reason,
            message=self.message,
            lastTransitionTime=format_time(self.since),
            observedGeneration=self.observed_generation,
        )


@dataclass(frozen=True)
class Overlap:
    """`pods` this release selects follow `release` (higher priority, or equal and a lexically first name)."""

    release: str
    priority: int  # the winner's
    pods: int


@dataclass(frozen=True)
class ReleaseStatus:
    """What the controller writes to status; counts are of the pods the release governs."""

    observed_generation: int = 0
    image: str | None = None  # the spec image the counts below refer to
    matched: int = 0
    updated: int = 0
    ready: int = 0
    updated_ready: int = 0
    upgrading: int = 0
    failed: int = 0
    previous_images: tuple[str, ...] = ()  # most recent first; rollback = set spec.image to one of them
    overlaps: tuple[Overlap, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type is kind), None)

    def to_json(self) -> ReleaseStatusJSON:
        out = ReleaseStatusJSON(
            observedGeneration=self.observed_generation,
            matchedPods=self.matched,
            updatedPods=self.updated,
            readyPods=self.ready,
            updatedReadyPods=self.updated_ready,
            upgradingPods=self.upgrading,
            failedPods=self.failed,
            previousImages=list(self.previous_images),
            overlaps=[
                OverlapJSON(release=o.release, priority=o.priority, pods=o.pods) for o in self.overlaps
            ],
            conditions=[c.to_json() for c in self.conditions],
        )
        if self.image is not None:
            out["image"] = self.image
        return out


@dataclass(frozen=True)
class Release:
    """One SidecarRelease (cluster-scoped: its name is its identity)."""

    name: str
    generation: int
    spec: ReleaseSpec
    status: ReleaseStatus = field(default_factory=ReleaseStatus)


def _int_or_percent(value: Any, where: str, *, default: int) -> IntOrPercent:
    if value is None:
        return IntOrPercent(default)
    if isinstance(value, bool):
        raise InvalidReleaseError(f"{where}: must be an integer or a percentage such as '25%'")
    if isinstance(value, int):
        if value < 0:
            raise InvalidReleaseError(f"{where}: must not be negative, got {value}")
        return IntOrPercent(value)
    if isinstance(value, str) and _PERCENT.match(value):
        percent = int(value[:-1])
        if percent > 100:
            raise InvalidReleaseError(f"{where}: a percentage must be at most 100%, got {value}")
        return IntOrPercent(percent, percent=True)
    raise InvalidReleaseError(f"{where}: must be an integer or a percentage such as '25%', got {value!r}")


def _opt_int(data: Mapping[str, Any], key: str, where: str, *, default: int, minimum: int) -> int:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidReleaseError(f"{where}.{key}: must be an integer >= {minimum}, got {value!r}")
    return value


def parse_strategy(value: Any) -> Strategy:
    """spec.strategy; absent fields take their defaults."""
    where = "spec.strategy"
    if value is None:
        return Strategy()
    if not isinstance(value, dict):
        raise InvalidReleaseError(f"{where}: must be an object")
    max_unavailable = _int_or_percent(
        value.get("maxUnavailable"), f"{where}.maxUnavailable", default=DEFAULT_MAX_UNAVAILABLE
    )
    if max_unavailable.value == 0:  # as Kruise: "This cannot be 0" (nothing would ever start)
        raise InvalidReleaseError(f"{where}.maxUnavailable: must be at least 1 or 1%")
    paused = value.get("paused", False)
    if not isinstance(paused, bool):
        raise InvalidReleaseError(f"{where}.paused: must be true or false")
    return Strategy(
        max_unavailable=max_unavailable,
        partition=_int_or_percent(value.get("partition"), f"{where}.partition", default=0),
        paused=paused,
        max_failures=_opt_int(value, "maxFailures", where, default=DEFAULT_MAX_FAILURES, minimum=1),
    )


def _image(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidReleaseError(f"{where}: must be a non-empty image reference")
    if not is_reference(value):
        raise InvalidReleaseError(
            f"{where}: {value!r} is not an image reference ([registry/]repo[:tag][@digest])"
        )
    return value


def parse_spec(value: Any) -> ReleaseSpec:
    """spec of a SidecarRelease."""
    if not isinstance(value, dict):
        raise InvalidReleaseError("spec: must be an object")
    if "selector" not in value:
        raise InvalidReleaseError("spec.selector: required (use {} to select every pod of the namespaces)")
    image = _image(value.get("image"), "spec.image")
    empty = value.get("emptyImage")
    empty_image = _image(empty, "spec.emptyImage") if empty is not None else None
    if empty_image is not None and empty_image == image:
        raise InvalidReleaseError("spec.image: must not be the empty image (it runs no agent and no Envoy)")
    try:
        selector = parse_selector(value["selector"], "spec.selector")
        namespaces = value.get("namespaceSelector")
        namespace_selector = (
            EVERYTHING if namespaces is None else parse_selector(namespaces, "spec.namespaceSelector")
        )
    except ValueError as exc:
        raise InvalidReleaseError(str(exc)) from exc
    priority = value.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidReleaseError(f"spec.priority: must be an integer, got {priority!r}")
    return ReleaseSpec(
        selector=selector,
        image=image,
        namespace_selector=namespace_selector,
        empty_image=empty_image,
        strategy=parse_strategy(value.get("strategy")),
        priority=priority,
    )


def _parse_condition(value: Any, where: str) -> Condition:
    if not isinstance(value, dict):
        raise InvalidReleaseError(f"{where}: must be an object")
    try:
        return Condition(
            type=ConditionType(value["type"]),
            status=value["status"] == "True",
            reason=str(value["reason"]),
            message=str(value.get("message", "")),
            since=parse_time(str(value["lastTransitionTime"])),
            observed_generation=int(value.get("observedGeneration", 0)),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidReleaseError(f"{where}: {exc}") from exc


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_overlap(value: Any, where: str) -> Overlap:
    if not isinstance(value, dict):
        raise InvalidReleaseError(f"{where}: must be an object")
    release, priority, pods = value.get("release"), value.get("priority"), value.get("pods")
    if not isinstance(release, str) or not _is_int(priority) or not _is_int(pods):
        raise InvalidReleaseError(f"{where}: needs release (a string), priority and pods (integers)")
    return Overlap(release=release, priority=priority, pods=pods)


def parse_status(value: Any) -> ReleaseStatus:
    """status as the controller wrote it (absent: empty); conditions of unknown types are dropped."""
    if value is None:
        return ReleaseStatus()
    if not isinstance(value, dict):
        raise InvalidReleaseError("status: must be an object")
    known = {str(t) for t in ConditionType}
    raw_conditions = value.get("conditions") or []
    conditions = tuple(
        _parse_condition(c, f"status.conditions[{i}]")
        for i, c in enumerate(raw_conditions)
        if isinstance(c, dict) and c.get("type") in known
    )
    overlaps = tuple(
        _parse_overlap(o, f"status.overlaps[{i}]") for i, o in enumerate(value.get("overlaps") or [])
    )
    previous = value.get("previousImages") or []
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        raise InvalidReleaseError("status.previousImages: must be a list of strings")
    image = value.get("image")

    def count(key: str) -> int:
        raw = value.get(key, 0)
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else 0

    return ReleaseStatus(
        observed_generation=count("observedGeneration"),
        image=image if isinstance(image, str) and image else None,
        matched=count("matchedPods"),
        updated=count("updatedPods"),
        ready=count("readyPods"),
        updated_ready=count("updatedReadyPods"),
        upgrading=count("upgradingPods"),
        failed=count("failedPods"),
        previous_images=tuple(previous),
        overlaps=overlaps,
        conditions=conditions,
    )


def parse_release(document: Mapping[str, Any]) -> Release:
    """A SidecarRelease from raw API JSON; InvalidReleaseError names the offending field."""
    if document.get("apiVersion") != API_VERSION or document.get("kind") != KIND:
        raise InvalidReleaseError(
            f"not a {API_VERSION} {KIND}: apiVersion {document.get('apiVersion')!r}, "
            f"kind {document.get('kind')!r}"
        )
    meta = document.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidReleaseError("metadata.name: required")
    generation = meta.get("generation", 1)
    if not isinstance(generation, int) or isinstance(generation, bool):
        raise InvalidReleaseError("metadata.generation: must be an integer")
    return Release(
        name=name,
        generation=generation,
        spec=parse_spec(document.get("spec")),
        status=parse_status(document.get("status")),
    )


# --- which release governs a pod ---------------------------------------------------------------------


def selects(release: Release, labels: Mapping[str, str], namespace_labels: Mapping[str, str]) -> bool:
    """The release's namespaceSelector matches the pod's namespace and its selector the pod's labels."""
    spec = release.spec
    return spec.namespace_selector.matches(namespace_labels) and spec.selector.matches(labels)


def precedence(release: Release) -> tuple[int, str]:
    """Sort key of overlapping releases: higher priority first, then the name (lexically first wins)."""
    return (-release.spec.priority, release.name)


def owning_release(
    releases: Iterable[Release], labels: Mapping[str, str], namespace_labels: Mapping[str, str]
) -> Release | None:
    """The release a pod with these labels follows (also for a pod being created), or None."""
    selecting = [r for r in releases if selects(r, labels, namespace_labels)]
    return min(selecting, key=precedence) if selecting else None
