"""Planned restarts: how many container restarts the controller caused, per container. Pure.

Every image change restarts the container (the kubelet counts it in `restartCount`, so an upgrade adds
2 to the pod's RESTARTS column: the standby onto the target, the old slot onto the empty image). The
controller counts each change it makes in `hotupgrade.io/planned-restarts` (JSON, container -> count),
in the same JSON patch as the image change, so the count can never lag the restart it explains: alert
rules subtract it (docs/upgrades.md). A malformed value counts as empty and is rewritten.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass

from controller.keys import ANNOTATION_PLANNED_RESTARTS


@dataclass(frozen=True)
class PlannedRestarts:
    """The annotation after one image change: `counts` to write, `delta` added for `container`."""

    counts: Mapping[str, int]
    container: str
    delta: int

    def render(self) -> str:
        return json.dumps(dict(self.counts), sort_keys=True, separators=(",", ":"))


def planned_in(annotations: Mapping[str, str]) -> dict[str, int]:
    """The counts in a pod's annotations ({} when absent or malformed)."""
    raw = annotations.get(ANNOTATION_PLANNED_RESTARTS)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(name): count
        for name, count in data.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }


def plan_restart(annotations: Mapping[str, str], container: str, delta: int = 1) -> PlannedRestarts:
    """The counts once `container` is restarted `delta` more times by the controller (never below 0)."""
    counts = planned_in(annotations)
    counts[container] = max(0, counts.get(container, 0) + delta)
    return PlannedRestarts(counts=counts, container=container, delta=delta)
