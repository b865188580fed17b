"""Which sidecar image a new pod gets: its governing SidecarRelease's, else the config default. Pure.

The release cache (webhook.releasecache, a process of its own) writes what it watched to a snapshot file;
the server reads it (webhook.release_source) and /mutate asks `choose_images`. The rule is the
controller's (`releaseapi.release.owning_release`: highest priority, then the lexically first name), so
the webhook and the controller never disagree about a pod's release. A release the parser refuses governs
no pod here, as in the controller (which reports it Degraded/InvalidSpec).

The snapshot: TypedDicts on the wire, a frozen dataclass inside. Times are Unix seconds written by the
cache process (this module reads no clock).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from releaseapi.release import InvalidReleaseError, Release, owning_release, parse_release
from webhook.config import WebhookConfig

SNAPSHOT_VERSION = 1


class SnapshotJSON(TypedDict):
    version: int
    releases: list[dict[str, Any]]  # SidecarRelease documents (metadata and spec; status dropped)
    namespaces: dict[str, dict[str, str]]  # name -> labels
    events: int  # changes (from lists and watches) applied since the cache process started
    updated: float  # when the content last changed
    synced: float  # when both caches had first listed


class InvalidSnapshotError(ValueError):
    """The file is not a snapshot this version writes."""


@dataclass(frozen=True)
class Snapshot:
    """What the release cache saw: the parsed releases, the names of those it could not parse, and labels."""

    releases: tuple[Release, ...]
    invalid: tuple[str, ...]
    namespaces: Mapping[str, Mapping[str, str]]
    events: int
    updated: float
    synced: float


@dataclass(frozen=True)
class ImageChoice:
    """The images a new pod gets, and the release that chose them (None: the config default)."""

    sidecar_image: str
    empty_image: str
    release: str | None = None
    generation: int | None = None

    @property
    def source(self) -> str:
        return "default" if self.release is None else "release"

    def applied(self, config: WebhookConfig) -> WebhookConfig:
        """The config with these images (the injection core reads them from the config)."""
        if (self.sidecar_image, self.empty_image) == (config.sidecar_image, config.empty_image):
            return config
        return replace(config, sidecar_image=self.sidecar_image, empty_image=self.empty_image)


def render_snapshot(
    releases: list[dict[str, Any]],
    namespaces: Mapping[str, Mapping[str, str]],
    *,
    events: int,
    updated: float,
    synced: float,
) -> str:
    """The snapshot file's text (releases in name order, so equal content renders equally)."""
    ordered = sorted(releases, key=lambda r: str((r.get("metadata") or {}).get("name", "")))
    body = SnapshotJSON(
        version=SNAPSHOT_VERSION,
        releases=ordered,
        namespaces={name: dict(labels) for name, labels in sorted(namespaces.items())},
        events=events,
        updated=updated,
        synced=synced,
    )
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidSnapshotError(f"{key}: must be a number")
    return float(value)


def parse_snapshot(text: str) -> Snapshot:
    """A snapshot from the file's text; InvalidSnapshotError when it is not one (a release that does not
    parse is not an error: it is listed in `invalid` and governs nothing)."""
    try:
        data: Any = json.loads(text)
    except ValueError as exc:
        raise InvalidSnapshotError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != SNAPSHOT_VERSION:
        raise InvalidSnapshotError(f"not a version {SNAPSHOT_VERSION} snapshot")
    raw_releases, raw_namespaces = data.get("releases"), data.get("namespaces")
    if not isinstance(raw_releases, list) or not isinstance(raw_namespaces, dict):
        raise InvalidSnapshotError("releases must be a list and namespaces an object")
    releases: list[Release] = []
    invalid: list[str] = []
    for document in raw_releases:
        try:
            releases.append(parse_release(document if isinstance(document, dict) else {}))
        except InvalidReleaseError:
            meta = document.get("metadata") if isinstance(document, dict) else None
            invalid.append(str((meta or {}).get("name", "?")))
    namespaces = {
        str(name): {str(k): str(v) for k, v in labels.items()}
        for name, labels in raw_namespaces.items()
        if isinstance(labels, dict)
    }
    return Snapshot(
        releases=tuple(releases),
        invalid=tuple(invalid),
        namespaces=namespaces,
        events=int(_number(data, "events")),
        updated=_number(data, "updated"),
        synced=_number(data, "synced"),
    )


def choose_images(
    snapshot: Snapshot | None,
    *,
    labels: Mapping[str, str],
    namespace: str,
    config: WebhookConfig,
) -> ImageChoice:
    """The governing release's image (and its emptyImage, else the config's) for a pod with `labels` in
    `namespace`; the config's images when no release selects it or there is no snapshot.

    A namespace the snapshot does not know (created an instant before the pod) is matched with no labels
    but its name (`kubernetes.io/metadata.name`, which the API server sets on every namespace)."""
    default = ImageChoice(config.sidecar_image, config.empty_image)
    if snapshot is None or not snapshot.releases:
        return default
    namespace_labels = snapshot.namespaces.get(namespace, {"kubernetes.io/metadata.name": namespace})
    owner = owning_release(snapshot.releases, labels, namespace_labels)
    if owner is None:
        return default
    return ImageChoice(
        sidecar_image=owner.spec.image,
        empty_image=owner.spec.empty_image or config.empty_image,
        release=owner.name,
        generation=owner.generation,
    )
