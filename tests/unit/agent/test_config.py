"""Configuration from the contract's environment names."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import contract
from agent.config import ConfigError, load_config


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


def test_parent_shutdown_must_outlast_the_drain() -> None:
    with pytest.raises(ConfigError, match="must be >="):
        load_config(
            {
                contract.ENV_SLOT: "a",
                contract.ENV_DRAIN_SECONDS: "10",
                contract.ENV_PARENT_SHUTDOWN_SECONDS: "5",
            }
        )


@pytest.mark.parametrize("value", ["ten", "-1"])
def test_bad_numbers_are_named(value: str) -> None:
    with pytest.raises(ConfigError, match=contract.ENV_BASE_ID):
        load_config({contract.ENV_SLOT: "a", contract.ENV_BASE_ID: value})
