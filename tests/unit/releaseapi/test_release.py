"""The SidecarRelease resource: parsing with field-named errors, defaults, selectors, status round trip."""

from datetime import UTC, datetime
from typing import Any

import pytest

from releaseapi.release import (
    API_VERSION,
    KIND,
    Condition,
    ConditionType,
    IntOrPercent,
    InvalidReleaseError,
    Overlap,
    ReleaseStatus,
    parse_release,
    parse_status,
)
from releaseapi.selector import InvalidSelectorError, parse_selector

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
IMAGE = "registry.local/hotupgrade-sidecar:2"


def doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}, "image": IMAGE}
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "web", "generation": 3},
        "spec": base,
    }


def test_defaults_follow_kruise() -> None:
    release = parse_release(doc())
    strategy = release.spec.strategy
    assert (release.name, release.generation, release.spec.priority) == ("web", 3, 0)
    assert strategy.max_unavailable == IntOrPercent(1) and strategy.partition == IntOrPercent(0)
    assert (strategy.paused, strategy.max_failures) == (False, 1)
    assert release.spec.namespace_selector.matches({}) and release.spec.empty_image is None
    assert release.status == ReleaseStatus()


def test_full_spec() -> None:
    release = parse_release(
        doc(
            namespaceSelector={"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]},
            emptyImage="registry.local/hotupgrade-empty:1",
            strategy={"maxUnavailable": "25%", "partition": 3, "paused": True, "maxFailures": 2},
            priority=-5,
        )
    )
    spec = release.spec
    assert spec.strategy.max_unavailable == IntOrPercent(25, percent=True)
    assert spec.strategy.partition == IntOrPercent(3)
    assert (spec.strategy.paused, spec.strategy.max_failures, spec.priority) == (True, 2, -5)
    assert spec.namespace_selector.matches({"team": "b"}) and not spec.namespace_selector.matches(
        {"team": "c"}
    )
    assert spec.empty_image == "registry.local/hotupgrade-empty:1"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"image": ""}, "spec.image: must be a non-empty"),
        ({"image": "Not An Image"}, "spec.image: 'Not An Image' is not an image reference"),
        ({"emptyImage": IMAGE}, "spec.image: must not be the empty image"),
        ({"selector": None}, "spec.selector: must be an object"),
        ({"strategy": {"maxUnavailable": 0}}, "spec.strategy.maxUnavailable: must be at least 1"),
        ({"strategy": {"maxUnavailable": "0%"}}, "spec.strategy.maxUnavailable: must be at least 1"),
        ({"strategy": {"maxUnavailable": "10.5%"}}, "spec.strategy.maxUnavailable: must be an integer or a"),
        ({"strategy": {"maxUnavailable": "101%"}}, "at most 100%"),
        ({"strategy": {"maxUnavailable": True}}, "spec.strategy.maxUnavailable: must be an integer"),
        ({"strategy": {"partition": -1}}, "spec.strategy.partition: must not be negative"),
        ({"strategy": {"maxFailures": 0}}, "spec.strategy.maxFailures: must be an integer >= 1"),
        ({"strategy": {"paused": "yes"}}, "spec.strategy.paused: must be true or false"),
        ({"priority": "high"}, "spec.priority: must be an integer"),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.selector.matchExpressions[0].values: must be non-empty for operator In",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
            "spec.selector.matchExpressions[0].values: must be empty for operator Exists",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}},
            "spec.namespaceSelector.matchExpressions[0].operator: must be one of",
        ),
        ({"selector": {"matchLabel": {}}}, "spec.selector: unknown field(s) matchLabel"),
    ],
)
def test_errors_name_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidReleaseError) as caught:
        parse_release(doc(**spec))
    assert field in str(caught.value)


def test_selector_is_required_and_kind_checked() -> None:
    missing = doc()
    del missing["spec"]["selector"]
    with pytest.raises(InvalidReleaseError, match=r"spec\.selector: required"):
        parse_release(missing)
    with pytest.raises(InvalidReleaseError, match=r"not a hotupgrade\.io/v1alpha1 SidecarRelease"):
        parse_release({**doc(), "kind": "SidecarSet"})


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"app": "web", "tier": "front"}, True),
        ({"app": "web", "tier": "front", "canary": ""}, False),  # DoesNotExist
        ({"app": "web", "tier": "back"}, False),  # In
        ({"app": "web", "tier": "front", "track": "beta"}, False),  # NotIn
        ({"app": "web", "tier": "front", "track": "stable"}, True),  # NotIn matches another value
        ({"app": "api", "tier": "front"}, False),  # matchLabels
        ({"tier": "front"}, False),
    ],
)
def test_label_selector_semantics(labels: dict[str, str], expected: bool) -> None:
    selector = parse_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "track", "operator": "NotIn", "values": ["beta"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "app", "operator": "Exists"},
            ],
        },
        "s",
    )
    assert selector.matches(labels) is expected


def test_empty_selector_matches_everything_and_round_trips() -> None:
    assert parse_selector({}, "s").matches({}) and parse_selector({}, "s").matches({"a": "b"})
    raw = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}],
    }
    assert parse_selector(raw, "s").to_json() == raw
    with pytest.raises(InvalidSelectorError, match="must be an object"):
        parse_selector([], "s")


@pytest.mark.parametrize(
    ("value", "total", "up", "down"),
    [
        (IntOrPercent(3), 10, 3, 3),
        (IntOrPercent(25, True), 10, 3, 2),
        (IntOrPercent(1, True), 3, 1, 0),
        (IntOrPercent(100, True), 7, 7, 7),
        (IntOrPercent(33, True), 0, 0, 0),
        (IntOrPercent(50, True), 5, 3, 2),
    ],
)
def test_int_or_percent_scaling(value: IntOrPercent, total: int, up: int, down: int) -> None:
    assert value.scaled(total, round_up=True) == up
    assert value.scaled(total, round_up=False) == down


def test_status_round_trips() -> None:
    status = ReleaseStatus(
        observed_generation=4,
        image=IMAGE,
        matched=6,
        updated=3,
        ready=6,
        updated_ready=3,
        upgrading=1,
        failed=0,
        previous_images=("registry.local/hotupgrade-sidecar:1",),
        overlaps=(Overlap(release="all", priority=10, pods=2),),
        conditions=(Condition(ConditionType.PAUSED, True, "PausedBySpec", "m", T0, 4),),
    )
    wire = status.to_json()
    assert wire["conditions"][0] == {
        "type": "Paused",
        "status": "True",
        "reason": "PausedBySpec",
        "message": "m",
        "lastTransitionTime": "2026-11-29T12:00:00Z",
        "observedGeneration": 4,
    }
    back = parse_status(wire)
    # Everything round-trips, overlaps too: the controller writes only a status that differs from this.
    assert back == status
    with pytest.raises(InvalidReleaseError, match=r"status\.overlaps\[0\]: needs release"):
        parse_status({"overlaps": [{"release": "all", "priority": "high", "pods": 2}]})
    assert parse_status({"conditions": [{"type": "Other", "status": "True"}]}).conditions == ()
    with pytest.raises(InvalidReleaseError, match=r"status\.conditions\[0\]"):
        parse_status({"conditions": [{"type": "Paused", "status": "True"}]})
