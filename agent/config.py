"""The agent's configuration, read from the environment names of docs/contract.md.

`load_config` takes the environment as a mapping so it stays pure; only agent/cli.py passes os.environ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent import contract
from agent.contract import BootstrapMode, Slot
from agent.state import as_slot


class ConfigError(ValueError):
    """The environment does not describe a usable agent."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent reads from its environment (docs/contract.md), validated."""

    slot: Slot
    run_dir: Path
    shm_dir: Path
    status_port: int
    admin_port: int
    base_id: int
    drain_seconds: int
    parent_shutdown_seconds: int
    bootstrap_template: Path | None
    envoy_binary: str | None
    wait_timeout: float
    pod_name: str
    pod_namespace: str
    bootstrap_mode: BootstrapMode = contract.BOOTSTRAP_MODE
    # `xds` mode: the control plane's "host:port" and Envoy's node.cluster ("" = the pod namespace).
    xds_address: str = ""
    xds_node_cluster: str = ""
    # Seconds a hot-restart child may take from its spawn to LIVE (docs/contract.md "Take-over deadline").
    takeover_deadline_seconds: int = contract.TAKEOVER_DEADLINE_SECONDS
    # Envoy's --skip-hot-restart-parent-stats (docs/contract.md "A stalled child").
    skip_hot_restart_parent_stats: bool = False

    @property
    def other_slot(self) -> Slot:
        """The twin container's slot."""
        return "b" if self.slot == "a" else "a"


def _int(environ: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _bool(environ: Mapping[str, str], name: str) -> bool:
    """`true` or `false`; unset or empty is false."""
    raw = environ.get(name, "").strip()
    if raw in ("", "false"):
        return False
    if raw == "true":
        return True
    raise ConfigError(f"{name}={raw!r} must be true or false")


def default_status_port(slot: Slot) -> int:
    """The contract's status port of `slot`."""
    return contract.STATUS_PORT_A if slot == "a" else contract.STATUS_PORT_B


def _bootstrap_mode(environ: Mapping[str, str]) -> BootstrapMode:
    raw = environ.get(contract.ENV_BOOTSTRAP_MODE, "").strip() or contract.BOOTSTRAP_MODE
    for mode in contract.BOOTSTRAP_MODES:
        if raw == mode:
            return mode
    choices = ", ".join(contract.BOOTSTRAP_MODES)
    raise ConfigError(f"{contract.ENV_BOOTSTRAP_MODE}={raw!r} must be one of {choices}")


def load_config(environ: Mapping[str, str]) -> AgentConfig:
    """Build the configuration; HOTUPGRADE_SLOT is required, everything else has a contract default."""
    raw_slot = environ.get(contract.ENV_SLOT, "").strip()
    if not raw_slot:
        raise ConfigError(f"{contract.ENV_SLOT} is required (one of {', '.join(contract.SLOTS)})")
    try:
        slot = as_slot(raw_slot)
    except ValueError as error:
        raise ConfigError(f"{contract.ENV_SLOT}: {error}") from None
    drain = _int(environ, contract.ENV_DRAIN_SECONDS, contract.DRAIN_SECONDS)
    parent_shutdown = _int(environ, contract.ENV_PARENT_SHUTDOWN_SECONDS, contract.PARENT_SHUTDOWN_SECONDS)
    # A parent-shutdown time too close to the drain is refused at start with a status, not here
    # (drain_timing_problem in agent/decisions.py): the status server still tells why.
    template = environ.get(contract.ENV_BOOTSTRAP_TEMPLATE, "").strip()
    mode = _bootstrap_mode(environ)
    if mode == "custom" and not template:
        raise ConfigError(f"{contract.ENV_BOOTSTRAP_MODE}=custom needs {contract.ENV_BOOTSTRAP_TEMPLATE}")
    # A malformed address is reported by the bootstrap rendering, in /status (agent/bootstrap).
    xds_address = environ.get(contract.ENV_XDS_ADDRESS, "").strip()
    if mode == "xds" and not xds_address:
        raise ConfigError(f"{contract.ENV_BOOTSTRAP_MODE}=xds needs {contract.ENV_XDS_ADDRESS}")
    binary = environ.get(contract.ENV_ENVOY_BINARY, "").strip()
    return AgentConfig(
        slot=slot,
        run_dir=Path(environ.get(contract.ENV_RUN_DIR, "").strip() or contract.RUN_DIR),
        shm_dir=Path(contract.SHM_DIR),
        status_port=_int(environ, contract.ENV_STATUS_PORT, default_status_port(slot), minimum=1),
        admin_port=_int(environ, contract.ENV_ADMIN_PORT, contract.ADMIN_PORT, minimum=1),
        base_id=_int(environ, contract.ENV_BASE_ID, contract.BASE_ID),
        drain_seconds=drain,
        parent_shutdown_seconds=parent_shutdown,
        bootstrap_template=Path(template) if template else None,
        envoy_binary=binary or None,
        wait_timeout=float(_int(environ, contract.ENV_WAIT_TIMEOUT, contract.WAIT_TIMEOUT, minimum=1)),
        pod_name=environ.get(contract.ENV_POD_NAME, ""),
        pod_namespace=environ.get(contract.ENV_POD_NAMESPACE, ""),
        bootstrap_mode=mode,
        xds_address=xds_address,
        xds_node_cluster=environ.get(contract.ENV_XDS_NODE_CLUSTER, "").strip(),
        takeover_deadline_seconds=_int(
            environ, contract.ENV_TAKEOVER_DEADLINE_SECONDS, contract.TAKEOVER_DEADLINE_SECONDS, minimum=1
        ),
        skip_hot_restart_parent_stats=_bool(environ, contract.ENV_SKIP_HOT_RESTART_PARENT_STATS),
    )
