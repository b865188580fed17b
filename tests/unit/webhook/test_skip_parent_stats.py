"""The webhook config's `skipHotRestartParentStats`: parsed, passed to both slots, hashed only when set."""

from __future__ import annotations

import pytest

from webhook import contract
from webhook.config import ConfigError, parse_config
from webhook.inject import sidecar_env


def names(env: list[dict[str, object]]) -> dict[object, object]:
    return {e["name"]: e.get("value") for e in env}


def test_off_by_default_and_then_no_variable_and_the_same_hash() -> None:
    default = parse_config({})
    assert default.skip_hot_restart_parent_stats is False
    for slot in ("a", "b"):
        assert contract.ENV_SKIP_HOT_RESTART_PARENT_STATS not in names(sidecar_env(slot, default))
    # Pods injected before the setting existed keep their injection hash.
    off = parse_config({"skipHotRestartParentStats": False})
    assert off.injection_hash() == default.injection_hash()


def test_on_sets_the_variable_in_both_slots_and_changes_the_hash() -> None:
    config = parse_config({"skipHotRestartParentStats": True})
    assert config.skip_hot_restart_parent_stats is True
    for slot in ("a", "b"):
        assert names(sidecar_env(slot, config))[contract.ENV_SKIP_HOT_RESTART_PARENT_STATS] == "true"
    assert config.injection_hash() != parse_config({}).injection_hash()


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_only_a_boolean_is_accepted(value: object) -> None:
    with pytest.raises(ConfigError, match="skipHotRestartParentStats: must be true or false"):
        parse_config({"skipHotRestartParentStats": value})
