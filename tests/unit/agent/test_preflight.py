"""Bootstrap preflight: what is validated before an Envoy starts (agent/preflight.py)."""

from __future__ import annotations

from pathlib import Path

from agent import contract
from agent.config import load_config
from agent.envoy import PendingValidation
from agent.preflight import start_preflight


class _CountingValidator:
    """A BootstrapValidator that records what it was asked to validate (never runs Envoy)."""

    def __init__(self) -> None:
        self.started: list[Path] = []

    def start(self, binary: str, bootstrap: Path) -> PendingValidation:
        self.started.append(bootstrap)
        raise OSError("not running Envoy in a unit test")


def test_a_bootstrap_already_validated_by_this_agent_is_not_validated_again(tmp_path: Path) -> None:
    environ = {
        contract.ENV_SLOT: "a",
        contract.ENV_RUN_DIR: str(tmp_path),
        contract.ENV_UPSTREAM_PORT: "8080",
    }
    config = load_config(environ)
    validator = _CountingValidator()
    first = start_preflight(config, environ, binary="envoy", validator=validator)
    assert first.text is not None and not first.known_valid and len(validator.started) == 1
    again = start_preflight(config, environ, binary="envoy", validator=validator, known_valid=first.text)
    assert (again.text, again.known_valid, again.validation) == (first.text, True, None)
    assert len(validator.started) == 1, "restarting a crashed Envoy does not wait for a second validation"
    changed = start_preflight(config, environ, binary="envoy", validator=validator, known_valid="other")
    assert not changed.known_valid and len(validator.started) == 2
