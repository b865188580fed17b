"""The `hotupgrade.io/status` annotation: the memory of what was injected and which slot is active.

Written by the injector, read by the guard and the controller (which rewrites `active`/`standby`
after each upgrade). Pure: parsing and rendering only.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any, NotRequired, TypedDict

STATUS_VERSION = 1


class InjectionStatusJSON(TypedDict):
    version: int
    active: str
    standby: str
    slots: dict[str, str]
    sidecarImage: str
    emptyImage: str
    configHash: str
    release: NotRequired[str]  # the SidecarRelease whose image was injected (absent: the config default)


class InvalidStatusError(ValueError):
    """The annotation is present but is not a status this version understands."""


@dataclass(frozen=True)
class InjectionStatus:
    """Container names of the pair, the slot of each, the images, the injection config hash and the
    SidecarRelease that chose the images at injection (None: the config's default)."""

    active: str
    standby: str
    slots: dict[str, str]
    sidecar_image: str
    empty_image: str
    config_hash: str
    release: str | None = None

    def to_json(self) -> InjectionStatusJSON:
        out = InjectionStatusJSON(
            version=STATUS_VERSION,
            active=self.active,
            standby=self.standby,
            slots=dict(self.slots),
            sidecarImage=self.sidecar_image,
            emptyImage=self.empty_image,
            configHash=self.config_hash,
        )
        if self.release is not None:
            out["release"] = self.release
        return out

    def render(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def swapped(self, *, sidecar_image: str) -> "InjectionStatus":
        """The status after an upgrade: the standby became active and runs `sidecar_image`."""
        return InjectionStatus(
            **{**asdict(self), "active": self.standby, "standby": self.active, "sidecar_image": sidecar_image}
        )


def parse_status(raw: str) -> InjectionStatus:
    """Parse the annotation value; raise InvalidStatusError with the reason when it is malformed."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # a deeply nested value is any user's to write
        raise InvalidStatusError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidStatusError("not a JSON object")
    if data.get("version") != STATUS_VERSION:
        raise InvalidStatusError(f"unsupported version {data.get('version')!r}")
    strings = ("active", "standby", "sidecarImage", "emptyImage", "configHash")
    for key in strings:
        if not isinstance(data.get(key), str) or not data[key]:
            raise InvalidStatusError(f"field {key!r} must be a non-empty string")
    slots = data.get("slots")
    if not isinstance(slots, dict) or set(slots) != {data["active"], data["standby"]}:
        raise InvalidStatusError("field 'slots' must map both container names to their slot")
    if not all(isinstance(slot, str) for slot in slots.values()) or sorted(slots.values()) != ["a", "b"]:
        raise InvalidStatusError("field 'slots' must assign slots 'a' and 'b'")
    release = data.get("release")
    if release is not None and (not isinstance(release, str) or not release):
        raise InvalidStatusError("field 'release' must be a non-empty string when present")
    return InjectionStatus(
        active=data["active"],
        standby=data["standby"],
        slots={str(k): str(v) for k, v in slots.items()},
        sidecar_image=data["sidecarImage"],
        empty_image=data["emptyImage"],
        config_hash=data["configHash"],
        release=release,
    )
