"""The status annotation: what the injector writes parses back; anything malformed is InvalidStatusError."""

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.injection_status import InjectionStatus, InvalidStatusError, parse_status

STATUS = InjectionStatus(
    active="hotupgrade-a",
    standby="hotupgrade-b",
    slots={"hotupgrade-a": "a", "hotupgrade-b": "b"},
    sidecar_image="s:1",
    empty_image="e:1",
    config_hash="0123456789abcdef",
)


def test_render_and_parse_round_trip() -> None:
    assert parse_status(STATUS.render()) == STATUS
    swapped = STATUS.swapped(sidecar_image="s:2")
    assert parse_status(swapped.render()) == swapped
    assert (swapped.active, swapped.standby, swapped.sidecar_image) == ("hotupgrade-b", "hotupgrade-a", "s:2")


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"active": ""},
        {"slots": {"hotupgrade-a": "a"}},
        {"slots": {"hotupgrade-a": "a", "hotupgrade-b": "a"}},
        {"slots": {"hotupgrade-a": 1, "hotupgrade-b": "b"}},
        {"slots": ["a", "b"]},
    ],
)
def test_malformed_statuses_are_rejected(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidStatusError):
        parse_status(json.dumps({**STATUS.to_json(), **change}))


def test_nesting_past_the_recursion_limit_is_invalid_not_a_crash() -> None:
    with pytest.raises(InvalidStatusError, match="not JSON"):
        parse_status("[" * 100_000)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(
        ["version", "active", "standby", "slots", "sidecarImage", "emptyImage", "configHash"]
    ),
    value=JSON,
)
def test_any_field_value_either_parses_or_is_invalid(key: str, value: Any) -> None:
    with contextlib.suppress(InvalidStatusError):
        parse_status(json.dumps({**STATUS.to_json(), key: value}))
