"""One line of facts about a pod for the CLI, parsed from raw API JSON. Pure."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.keys import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE
from controller.observed import pod_is_ready
from controller.record import UpgradeRecord, record_in
from webhook.injection_status import InjectionStatus, InvalidStatusError, parse_status


@dataclass(frozen=True)
class PodInfo:
    """What the CLI shows and plans with; `status`/`record` are None when absent or unreadable."""

    namespace: str
    name: str
    ready: bool
    pod_ip: str | None
    status: InjectionStatus | None
    record: UpgradeRecord | None
    target: str | None

    @property
    def injected(self) -> bool:
        return self.status is not None

    @property
    def active_slot(self) -> str | None:
        return self.status.slots[self.status.active] if self.status else None

    @property
    def in_flight(self) -> bool:
        return self.record is not None and self.record.in_flight


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status: InjectionStatus | None = None
    if ANNOTATION_STATUS in annotations:
        try:
            status = parse_status(annotations[ANNOTATION_STATUS])
        except InvalidStatusError:
            status = None
    return PodInfo(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        ready=pod_is_ready(pod),
        pod_ip=(pod.get("status") or {}).get("podIP") or None,
        status=status,
        record=record_in(annotations),
        target=annotations.get(ANNOTATION_TARGET_IMAGE) or None,
    )
