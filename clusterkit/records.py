"""Synthetic upgrade records and the injection status of one pod (OLD -> NEW, slot a to b), shared by
the controller's unit tests (tests/unit/controller/podfixtures.py) and the planning bench."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from controller.record import Phase, UpgradeRecord
from webhook.injection_status import InjectionStatus

EMPTY = "registry.local/hotupgrade-empty:1"
OLD = "registry.local/hotupgrade-sidecar:1"
NEW = "registry.local/hotupgrade-sidecar:2"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

STATUS = InjectionStatus(
    active="hotupgrade-a",
    standby="hotupgrade-b",
    slots={"hotupgrade-a": "a", "hotupgrade-b": "b"},
    sidecar_image=OLD,
    empty_image=EMPTY,
    config_hash="cafe",
)


def upgrade_record(**changes: Any) -> UpgradeRecord:
    """A record of the upgrade OLD -> NEW from slot a to slot b, begun at T0; `changes` override it."""
    base = UpgradeRecord(
        phase=Phase.TAKING_OVER,
        from_image=OLD,
        to_image=NEW,
        attempt=1,
        started=T0,
        phase_since=T0,
        message="",
        old_container="hotupgrade-a",
        new_container="hotupgrade-b",
        old_slot="a",
        new_slot="b",
        empty_image=EMPTY,
    )
    return replace(base, **changes)
