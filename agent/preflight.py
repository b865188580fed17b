"""Bootstrap preflight: render this slot's bootstrap and start `envoy --mode validate` on it.

A hot-restart child that rejects its bootstrap has already made the live Envoy close its admin API
(ShutdownAdmin comes first), so every start validates before it spawns Envoy. The preflight starts
early and runs in the background (the first one before the binary's versions are probed, later ones
before the run-dir lock); agent/launch.py collects the verdict just before it would spawn Envoy.
Validate mode runs with hot restart off: it must not touch the live Envoy's shm or sockets.
A bootstrap identical to one that already validated in this agent (restarting a crashed Envoy) is not
validated again: the restart is the pod's outage, and validation is most of its time on a busy node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agent.bootstrap import BootstrapError, render_bootstrap, validation_file, write_bootstrap_file
from agent.config import AgentConfig
from agent.envoy import BootstrapValidator, PendingValidation


@dataclass(frozen=True)
class Preflight:
    """The rendered bootstrap (or why it could not be rendered) and its validation, maybe still running."""

    text: str | None
    render_error: str | None
    validation: PendingValidation | None
    spawn_error: str | None
    known_valid: bool = False

    def cancel(self) -> None:
        """Stop the validation if it still runs."""
        if self.validation is not None:
            self.validation.cancel()


def start_preflight(
    config: AgentConfig,
    environ: Mapping[str, str],
    *,
    binary: str,
    validator: BootstrapValidator,
    known_valid: str | None = None,
) -> Preflight:
    """Render the bootstrap and start validating it, unless it equals `known_valid`; returns at once."""
    try:
        text = render_bootstrap(config, environ)
    except BootstrapError as error:
        return Preflight(text=None, render_error=str(error), validation=None, spawn_error=None)
    if text == known_valid:
        return Preflight(text=text, render_error=None, validation=None, spawn_error=None, known_valid=True)
    try:
        path = write_bootstrap_file(validation_file(config), text)
        validation = validator.start(binary, path)
    except OSError as error:
        return Preflight(text=text, render_error=None, validation=None, spawn_error=str(error))
    return Preflight(text=text, render_error=None, validation=validation, spawn_error=None)
