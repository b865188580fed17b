"""Envoy bootstrap from a template: `${VAR}` replaced from the pod's environment.

Which template is the bootstrap mode's choice (docs/contract.md "Bootstrap modes"): `static` the image's
or the packaged envoy.yaml.tmpl, `xds` the packaged envoy-xds.yaml.tmpl (an ADS stream to the control
plane, with the values `xds_values` derives from the pod), `custom` only the configured path.
`render` is pure; `render_bootstrap` reads the template and `write_bootstrap_file` writes the rendered
text into the run dir (per slot and epoch for Envoy, per slot for `envoy --mode validate`). The default
template ships as package data (envoy.yaml.tmpl) for images that do not bring their own.
Besides the environment, a template may use the HTTP/2 drain timings the agent derives from the
parent-shutdown time (`goaway_timings`, docs/http-drain.md), so the old Envoy says GOAWAY on every
HTTP/2 connection before it exits.
"""

from __future__ import annotations

import ipaddress
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agent import contract
from agent.config import AgentConfig

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "envoy.yaml.tmpl"
XDS_TEMPLATE = Path(__file__).resolve().parent / "envoy-xds.yaml.tmpl"
# Template names of the `xds` mode, computed by the agent from HOTUPGRADE_XDS_ADDRESS and the pod.
XDS_HOST = "HOTUPGRADE_XDS_HOST"
XDS_PORT = "HOTUPGRADE_XDS_PORT"
XDS_CLUSTER_TYPE = "HOTUPGRADE_XDS_CLUSTER_TYPE"
XDS_NODE_ID = "HOTUPGRADE_XDS_NODE_ID"
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


@dataclass(frozen=True)
class XdsAddress:
    """The control plane's ADS address; `cluster_type` is how Envoy resolves `host` (an IP or a DNS name)."""

    host: str
    port: int
    cluster_type: str


def parse_xds_address(address: str) -> XdsAddress:
    """ "host:port", "10.0.0.7:18000" or "[fd00::7]:18000"; BootstrapError names what is wrong."""
    host, sep, port_text = address.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or (":" in host and not bracketed):
        raise BootstrapError(
            f"{contract.ENV_XDS_ADDRESS}={address!r} must be host:port (an IPv6 address in brackets)"
        )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise BootstrapError(f"{contract.ENV_XDS_ADDRESS}={address!r}: the port must be 1..65535")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if bracketed and not isinstance(ip, ipaddress.IPv6Address):
        raise BootstrapError(f"{contract.ENV_XDS_ADDRESS}={address!r}: only IPv6 addresses go in brackets")
    # An IP is used as is; a name (a control-plane Service) is resolved and re-resolved by Envoy.
    return XdsAddress(host=host, port=int(port_text), cluster_type="STRICT_DNS" if ip is None else "STATIC")


def xds_values(config: AgentConfig) -> dict[str, str]:
    """The `xds` template's names: the ADS address, node id `<pod>.<namespace>`, node cluster."""
    if not config.pod_name or not config.pod_namespace:
        raise BootstrapError(
            f"the xds bootstrap names its node after the pod: {contract.ENV_POD_NAME} and "
            f"{contract.ENV_POD_NAMESPACE} must be set"
        )
    address = parse_xds_address(config.xds_address)
    return {
        XDS_HOST: address.host,
        XDS_PORT: str(address.port),
        XDS_CLUSTER_TYPE: address.cluster_type,
        XDS_NODE_ID: f"{config.pod_name}.{config.pod_namespace}",
        contract.ENV_XDS_NODE_CLUSTER: config.xds_node_cluster or config.pod_namespace,
    }


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
    if config.bootstrap_mode == "xds":
        values.update(xds_values(config))
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
    """`xds`: the packaged xds template; else the configured one (`custom` always has one), else the
    image's default path, else the packaged static template."""
    if config.bootstrap_mode == "xds":
        return XDS_TEMPLATE
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
    """Read the mode's template and render it for this slot."""
    source = template_path(config, default_exists=Path(contract.BOOTSTRAP_TEMPLATE).is_file())
    try:
        text = source.read_text()
    except OSError as error:
        raise BootstrapError(
            f"cannot read the {config.bootstrap_mode} bootstrap template {source}: {error.strerror}"
        ) from None
    return render(text, template_values(environ, config))


def write_bootstrap_file(target: Path, text: str) -> Path:
    """Write atomically (Envoy may read the file while we replace it); returns target."""
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target
