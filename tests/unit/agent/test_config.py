"""Configuration from the contract's environment names."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import contract
from agent.config import ConfigError, load_config
from agent.decisions import Refuse, drain_timing_problem
from agent.startplan import plan_start
from agent.state import initial_state
from tests.unit.agent.states import observe


def test_slot_is_required() -> None:
    with pytest.raises(ConfigError, match=contract.ENV_SLOT):
        load_config({})


def test_unknown_slot_is_rejected() -> None:
    with pytest.raises(ConfigError, match="slot must be one of"):
        load_config({contract.ENV_SLOT: "c"})


@pytest.mark.parametrize(("slot", "port"), [("a", contract.STATUS_PORT_A), ("b", contract.STATUS_PORT_B)])
def test_defaults_come_from_the_contract(slot: str, port: int) -> None:
    config = load_config({contract.ENV_SLOT: slot})
    assert config.slot == slot
    assert config.status_port == port
    assert config.run_dir == Path(contract.RUN_DIR)
    assert config.admin_port == contract.ADMIN_PORT
    assert config.base_id == contract.BASE_ID
    assert config.drain_seconds == contract.DRAIN_SECONDS
    assert config.parent_shutdown_seconds == contract.PARENT_SHUTDOWN_SECONDS
    assert config.wait_timeout == contract.WAIT_TIMEOUT
    assert config.bootstrap_template is None
    assert config.envoy_binary is None
    assert config.other_slot != slot


def test_environment_overrides() -> None:
    config = load_config(
        {
            contract.ENV_SLOT: "b",
            contract.ENV_RUN_DIR: "/tmp/run",
            contract.ENV_STATUS_PORT: "1234",
            contract.ENV_ADMIN_PORT: "2345",
            contract.ENV_BASE_ID: "42",
            contract.ENV_DRAIN_SECONDS: "3",
            contract.ENV_PARENT_SHUTDOWN_SECONDS: "4",
            contract.ENV_BOOTSTRAP_TEMPLATE: "/etc/t.tmpl",
            contract.ENV_ENVOY_BINARY: "/opt/envoy",
            contract.ENV_WAIT_TIMEOUT: "9",
        }
    )
    assert (config.run_dir, config.status_port, config.admin_port, config.base_id) == (
        Path("/tmp/run"),
        1234,
        2345,
        42,
    )
    assert (config.drain_seconds, config.parent_shutdown_seconds, config.wait_timeout) == (3, 4, 9.0)
    assert config.bootstrap_template == Path("/etc/t.tmpl")
    assert config.envoy_binary == "/opt/envoy"


@pytest.mark.parametrize(("drain", "parent_shutdown"), [(10, 5), (1, 1), (10, 10)])
def test_parent_shutdown_must_outlast_the_drain_by_the_margin(drain: int, parent_shutdown: int) -> None:
    # Loaded (the status server must still start to tell why), then refused before any Envoy starts.
    config = load_config(
        {
            contract.ENV_SLOT: "a",
            contract.ENV_DRAIN_SECONDS: str(drain),
            contract.ENV_PARENT_SHUTDOWN_SECONDS: str(parent_shutdown),
        }
    )
    problem = drain_timing_problem(
        drain_seconds=config.drain_seconds, parent_shutdown_seconds=config.parent_shutdown_seconds
    )
    assert problem is not None
    assert f"{contract.ENV_PARENT_SHUTDOWN_SECONDS}={parent_shutdown} must be at least" in problem
    assert f"{contract.ENV_DRAIN_SECONDS}={drain} + 1s" in problem
    plan = plan_start(observe(initial_state(7)), config, envoy_version="1.40.0")
    assert plan == Refuse(problem, failure="bad_config")


@pytest.mark.parametrize(("drain", "parent_shutdown"), [(1, 2), (10, 11), (10, 15), (0, 1)])
def test_a_parent_shutdown_one_second_past_the_drain_is_accepted(drain: int, parent_shutdown: int) -> None:
    assert drain_timing_problem(drain_seconds=drain, parent_shutdown_seconds=parent_shutdown) is None


def test_the_contract_defaults_pass_the_drain_rule() -> None:
    assert (
        drain_timing_problem(
            drain_seconds=contract.DRAIN_SECONDS, parent_shutdown_seconds=contract.PARENT_SHUTDOWN_SECONDS
        )
        is None
    )


@pytest.mark.parametrize("value", ["ten", "-1"])
def test_bad_numbers_are_named(value: str) -> None:
    with pytest.raises(ConfigError, match=contract.ENV_BASE_ID):
        load_config({contract.ENV_SLOT: "a", contract.ENV_BASE_ID: value})


SKIP_VALUES = [("", False), ("false", False), ("true", True), (" true ", True)]


@pytest.mark.parametrize(("raw", "expected"), SKIP_VALUES)
def test_skip_hot_restart_parent_stats(raw: str, expected: bool) -> None:
    environ = {contract.ENV_SLOT: "a", contract.ENV_SKIP_HOT_RESTART_PARENT_STATS: raw}
    assert load_config(environ).skip_hot_restart_parent_stats is expected
    assert load_config({contract.ENV_SLOT: "a"}).skip_hot_restart_parent_stats is False


@pytest.mark.parametrize("raw", ["yes", "1", "True"])
def test_skip_hot_restart_parent_stats_is_true_or_false(raw: str) -> None:
    with pytest.raises(ConfigError, match=contract.ENV_SKIP_HOT_RESTART_PARENT_STATS):
        load_config({contract.ENV_SLOT: "a", contract.ENV_SKIP_HOT_RESTART_PARENT_STATS: raw})
