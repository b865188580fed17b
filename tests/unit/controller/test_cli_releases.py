"""`hotupgrade status [NAME...]`: the release table from status, one release's conditions, rollback images and
overlaps, and its pods with where each stands."""

from dataclasses import replace
from typing import Any

from controller.cli.releaseview import RELEASE_HEADERS, detail_lines, pod_rows, release_row, release_table
from controller.record import Phase
from controller.release import (
    Condition,
    ConditionType,
    Overlap,
    Release,
    ReleaseSpec,
    ReleaseStatus,
)
from controller.rollout import PodFacts, plan_fleet
from controller.selector import EVERYTHING
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, T0, upgrade_record

STATUS_JSON = ReleaseStatus(
    observed_generation=2,
    image=NEW,
    matched=6,
    updated=3,
    ready=6,
    upgrading=1,
    failed=0,
    previous_images=(OLD,),
    overlaps=(Overlap("canary", 10, 2),),
    conditions=(
        Condition(ConditionType.PROGRESSING, True, "RollingOut", "1 pod(s) upgrading", T0, 2),
        Condition(ConditionType.PAUSED, False, "NotPaused", "pods start", T0, 2),
    ),
).to_json()


def doc(name: str, status: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": name, "generation": 2}, "spec": {"image": NEW}}
    if status is not None:
        out["status"] = status
    return out


def test_release_table() -> None:
    assert release_row(doc("web", STATUS_JSON)) == ["web", NEW, "6", "3", "6", "1", "0", "no", "RollingOut"]
    assert release_row(doc("new")) == ["new", NEW, *["-"] * (len(RELEASE_HEADERS) - 2)]
    assert [r[0] for r in release_table([doc("b"), doc("a")])] == ["a", "b"]


def test_details_say_what_to_do() -> None:
    assert detail_lines(doc("web", STATUS_JSON)) == [
        "observed generation: 2 (spec generation 2)",
        "Progressing: True RollingOut: 1 pod(s) upgrading",
        "Paused: False NotPaused: pods start",
        f"roll back to (set spec.image): {OLD}",
        "2 selected pod(s) follow canary (priority 10)",
    ]
    assert detail_lines(doc("bad", {"conditions": [{"type": "Paused"}]})) == ["status: unreadable"]


def test_pod_rows() -> None:
    release = Release(name="web", generation=2, spec=ReleaseSpec(selector=EVERYTHING, image=NEW))
    base = PodFacts(namespace="shop", name="web-0", labels={}, ready=True, status=STATUS)
    moving = replace(base, name="web-1", target=NEW, record=upgrade_record(phase=Phase.DRAINING))
    pods = {p.key: p for p in (base, moving)}
    plan = plan_fleet([release], pods.values(), {}, now=T0).releases["web"]
    assert pod_rows(plan, pods) == [
        ["shop/web-0", "Waiting", OLD, "-", "-"],
        ["shop/web-1", "Upgrading", OLD, NEW, "Draining"],
    ]
