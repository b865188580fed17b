"""Bootstrap modes (docs/contract.md "Bootstrap modes"): which template each mode renders, the xds values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import contract
from agent.bootstrap import (
    DEFAULT_TEMPLATE,
    XDS_TEMPLATE,
    BootstrapError,
    XdsAddress,
    parse_xds_address,
    render,
    template_path,
    template_values,
    xds_values,
)
from agent.config import ConfigError, load_config

POD = {
    contract.ENV_SLOT: "a",
    contract.ENV_POD_NAME: "ledger-7f9c",
    contract.ENV_POD_NAMESPACE: "payments",
    contract.ENV_ADMIN_PORT: "15100",
}
XDS = {**POD, contract.ENV_BOOTSTRAP_MODE: "xds", contract.ENV_XDS_ADDRESS: "xds.mesh.svc:18000"}


def render_xds(environ: dict[str, str]) -> dict[str, Any]:
    config = load_config(environ)
    text = render(XDS_TEMPLATE.read_text(), template_values(environ, config))
    rendered: dict[str, Any] = yaml.safe_load(text)
    return rendered


def test_the_default_mode_is_static_and_keeps_todays_template_choice() -> None:
    config = load_config({contract.ENV_SLOT: "a"})
    assert config.bootstrap_mode == contract.BOOTSTRAP_MODE == "static"
    assert template_path(config, default_exists=False) == DEFAULT_TEMPLATE
    assert config.takeover_deadline_seconds == contract.TAKEOVER_DEADLINE_SECONDS


def test_xds_mode_uses_the_built_in_template_whatever_the_configured_path() -> None:
    config = load_config({**XDS, contract.ENV_BOOTSTRAP_TEMPLATE: "/etc/hotupgrade/envoy.yaml.tmpl"})
    assert template_path(config, default_exists=True) == XDS_TEMPLATE


def test_custom_mode_uses_only_the_configured_template() -> None:
    path = f"{contract.BOOTSTRAP_CONFIG_DIR}/envoy.yaml"
    environ = {**POD, contract.ENV_BOOTSTRAP_MODE: "custom", contract.ENV_BOOTSTRAP_TEMPLATE: path}
    config = load_config(environ)
    assert template_path(config, default_exists=False) == Path(path)
    with pytest.raises(ConfigError, match="custom needs HOTUPGRADE_BOOTSTRAP_TEMPLATE"):
        load_config({**POD, contract.ENV_BOOTSTRAP_MODE: "custom"})


def test_bad_mode_and_missing_xds_address_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must be one of static, xds, custom"):
        load_config({**POD, contract.ENV_BOOTSTRAP_MODE: "dynamic"})
    with pytest.raises(ConfigError, match="xds needs HOTUPGRADE_XDS_ADDRESS"):
        load_config({**POD, contract.ENV_BOOTSTRAP_MODE: "xds"})
    with pytest.raises(ConfigError, match="HOTUPGRADE_TAKEOVER_DEADLINE_SECONDS=0 must be >= 1"):
        load_config({**POD, contract.ENV_TAKEOVER_DEADLINE_SECONDS: "0"})


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("xds.mesh.svc:18000", XdsAddress("xds.mesh.svc", 18000, "STRICT_DNS")),
        ("10.96.0.7:18000", XdsAddress("10.96.0.7", 18000, "STATIC")),
        ("[fd00::7]:18000", XdsAddress("fd00::7", 18000, "STATIC")),
        (" control-plane:1 ", XdsAddress("control-plane", 1, "STRICT_DNS")),
    ],
)
def test_xds_address_forms(address: str, expected: XdsAddress) -> None:
    assert parse_xds_address(address) == expected


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("xds.mesh.svc", "must be host:port"),
        (":18000", "must be host:port"),
        ("fd00::7:18000", "IPv6 address in brackets"),
        ("xds:0", "port must be 1..65535"),
        ("xds:http", "port must be 1..65535"),
        ("[xds]:18000", "only IPv6 addresses go in brackets"),
        ("[10.0.0.1]:18000", "only IPv6 addresses go in brackets"),
    ],
)
def test_bad_xds_addresses_are_named(address: str, why: str) -> None:
    with pytest.raises(BootstrapError, match=why):
        parse_xds_address(address)


def test_node_comes_from_the_pod_and_the_cluster_label_falls_back_to_the_namespace() -> None:
    values = xds_values(load_config(XDS))
    assert values["HOTUPGRADE_XDS_NODE_ID"] == "ledger-7f9c.payments"
    assert values[contract.ENV_XDS_NODE_CLUSTER] == "payments"
    labelled = xds_values(load_config({**XDS, contract.ENV_XDS_NODE_CLUSTER: "ledger"}))
    assert labelled[contract.ENV_XDS_NODE_CLUSTER] == "ledger"


def test_xds_needs_the_pod_name_and_namespace() -> None:
    with pytest.raises(BootstrapError, match="HOTUPGRADE_POD_NAME and HOTUPGRADE_POD_NAMESPACE must be set"):
        xds_values(load_config({**XDS, contract.ENV_POD_NAME: ""}))


def test_static_mode_needs_no_xds_values() -> None:
    values = template_values(POD, load_config(POD))
    assert "HOTUPGRADE_XDS_NODE_ID" not in values


def test_the_xds_template_renders_an_ads_bootstrap_without_initial_fetch_timeouts() -> None:
    bootstrap = render_xds(XDS)
    assert bootstrap["node"] == {"id": "ledger-7f9c.payments", "cluster": "payments"}
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15100}
    dynamic = bootstrap["dynamic_resources"]
    (grpc,) = dynamic["ads_config"]["grpc_services"]
    assert dynamic["ads_config"]["api_type"] == "GRPC"
    assert grpc["envoy_grpc"]["cluster_name"] == "hotupgrade_xds"
    for primary in ("lds_config", "cds_config"):
        # 0s disables the timeout: Envoy waits for its listeners and clusters instead of starting without.
        assert dynamic[primary] == {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"}
    assert "listeners" not in bootstrap["static_resources"], "every listener comes from the control plane"
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address == {"address": "xds.mesh.svc", "port_value": 18000}
    (options,) = cluster["typed_extension_protocol_options"].values()
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}, "gRPC needs HTTP/2"


def test_the_xds_template_takes_an_ipv6_control_plane_statically() -> None:
    bootstrap = render_xds({**XDS, contract.ENV_XDS_ADDRESS: "[fd00::7]:18000"})
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["type"] == "STATIC"
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"]["address"] == "fd00::7"
