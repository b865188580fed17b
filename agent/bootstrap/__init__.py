"""Envoy bootstrap from a template: `${VAR}` replaced from the pod's environment.

`render` is pure; `render_bootstrap` reads the template and `write_bootstrap_file` writes the rendered
text into the run dir (per slot and epoch for Envoy, per slot for `envoy --mode validate`). The default
template ships as package data (envoy.yaml.tmpl) for images that do not bring their own.
Besides the environment, a template may use the HTTP/2 drain timings the agent derives from the
parent-shutdown time (`goaway_timings`, docs/http-drain.md), so the old Envoy says GOAWAY on every
HTTP/2 connection before it exits.
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent import contract
from agent.config import AgentConfig

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "envoy.yaml.tmpl"
# Template names for the timings below (not environment variables: the agent computes them).
HTTP2_DRAIN_TIMEOUT = "HOTUPGRADE_HTTP2_DRAIN_TIMEOUT"
HTTP2_IDLE_TIMEOUT = "HOTUPGRADE_HTTP2_IDLE_TIMEOUT"


@dataclass(frozen=True)
class GoawayTimings:
    """HTTP connection manager timings that fit an HTTP/2 connection's goodbye into the old Envoy's life.

    drain_timeout_s: the graceful GOAWAY (last stream 2^31-1) -> the final GOAWAY (RFC 9113 section 6.8).
    idle_timeout_s: an HTTP/2 connection without streams this long gets its graceful GOAWAY; Envoy 1.40
    sends a drain GOAWAY only with a response (envoy#14350), so this is how idle connections get theirs.
    """

    drain_timeout_s: float
    idle_timeout_s: float


def goaway_timings(parent_shutdown_seconds: int) -> GoawayTimings:
    """Every HTTP/2 connection has its final GOAWAY by 0.7 x P, leaving >= 0.3 x P for accepted streams.

    P is --parent-shutdown-time-s: the old Envoy exits P seconds after the drain starts. A busy connection
    gets its graceful GOAWAY with its next response (drain strategy `immediate`), an idle one after
    P/2 without streams; the final GOAWAY follows one drain_timeout later: 1 s (Envoy's own default for
    its graceful GOAWAY), P/5 when P is short. A stream the client opens in that time is still served;
    one that reaches Envoy after the final GOAWAY is refused, unprocessed, so the client may retry it.
    Envoy then closes the connection once the streams it accepted are done.
    """
    period = max(float(parent_shutdown_seconds), 1.0)
    return GoawayTimings(drain_timeout_s=min(1.0, period / 5), idle_timeout_s=period / 2)


def _duration(seconds: float) -> str:
    """A protobuf Duration as Envoy's YAML takes it."""
    return f"{seconds:.3f}s"


class BootstrapError(ValueError):
    """The template cannot be rendered (unknown variable, bad placeholder, unreadable file)."""


def template_values(environ: Mapping[str, str], config: AgentConfig) -> dict[str, str]:
    """The environment plus the contract defaults the agent itself uses, so both always agree."""
    values = dict(environ)
    values.setdefault(contract.ENV_LISTEN_PORT, str(contract.LISTEN_PORT))
    values.setdefault(contract.ENV_TCP_LISTEN_PORT, str(contract.TCP_LISTEN_PORT))
    upstream = values.get(contract.ENV_UPSTREAM_PORT)
    if upstream:
        values.setdefault(contract.ENV_TCP_UPSTREAM_PORT, upstream)
    values[contract.ENV_SLOT] = config.slot
    values[contract.ENV_ADMIN_PORT] = str(config.admin_port)
    values[contract.ENV_BASE_ID] = str(config.base_id)
    values[contract.ENV_RUN_DIR] = str(config.run_dir)
    timings = goaway_timings(config.parent_shutdown_seconds)
    values[HTTP2_DRAIN_TIMEOUT] = _duration(timings.drain_timeout_s)
    values[HTTP2_IDLE_TIMEOUT] = _duration(timings.idle_timeout_s)
    return values


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute `${VAR}`/`$VAR`; a name missing from `values` is an error, never an empty string."""
    try:
        return string.Template(template).substitute(values)
    except KeyError as error:
        raise BootstrapError(f"the bootstrap template uses ${{{error.args[0]}}}, which is not set") from None
    except ValueError as error:
        raise BootstrapError(f"the bootstrap template is malformed: {error}") from None


def template_path(config: AgentConfig, *, default_exists: bool) -> Path:
    """The configured template, else the image's default path, else the packaged template."""
    if config.bootstrap_template is not None:
        return config.bootstrap_template
    return Path(contract.BOOTSTRAP_TEMPLATE) if default_exists else DEFAULT_TEMPLATE


def bootstrap_file(config: AgentConfig, epoch: int) -> Path:
    """Where the bootstrap of this slot's Envoy of `epoch` is written (in the run dir)."""
    return config.run_dir / f"envoy-{config.slot}-epoch{epoch}.yaml"


def validation_file(config: AgentConfig) -> Path:
    """Where the bootstrap for `envoy --mode validate` is written (one per slot)."""
    return config.run_dir / f"envoy-{config.slot}-validate.yaml"


def render_bootstrap(config: AgentConfig, environ: Mapping[str, str]) -> str:
    """Read the template (configured, image default or packaged) and render it for this slot."""
    source = template_path(config, default_exists=Path(contract.BOOTSTRAP_TEMPLATE).is_file())
    try:
        text = source.read_text()
    except OSError as error:
        raise BootstrapError(f"cannot read bootstrap template {source}: {error.strerror}") from None
    return render(text, template_values(environ, config))


def write_bootstrap_file(target: Path, text: str) -> Path:
    """Write atomically (Envoy may read the file while we replace it); returns target."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target
