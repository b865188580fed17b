"""Bootstrap templates: substitution from the environment, clear errors, and the shipped default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent import contract
from agent.bootstrap import (
    DEFAULT_TEMPLATE,
    HTTP2_DRAIN_TIMEOUT,
    HTTP2_IDLE_TIMEOUT,
    BootstrapError,
    goaway_timings,
    render,
    template_path,
    template_values,
)
from agent.config import load_config


def test_render_substitutes_and_keeps_escaped_dollars() -> None:
    assert render("port: ${P} cost: $$5 name: $N", {"P": "80", "N": "x"}) == "port: 80 cost: $5 name: x"


def test_unknown_variable_is_a_named_error() -> None:
    with pytest.raises(BootstrapError, match=r"\$\{MISSING\}"):
        render("a: ${MISSING}", {})


def test_malformed_placeholder_is_an_error() -> None:
    with pytest.raises(BootstrapError, match="malformed"):
        render("a: ${", {})


def test_values_take_admin_port_and_base_id_from_the_config_and_default_ports() -> None:
    environ = {contract.ENV_SLOT: "a", contract.ENV_ADMIN_PORT: "9901", contract.ENV_UPSTREAM_PORT: "8080"}
    values = template_values(environ, load_config(environ))
    assert values[contract.ENV_ADMIN_PORT] == "9901"
    assert values[contract.ENV_BASE_ID] == str(contract.BASE_ID)
    assert values[contract.ENV_LISTEN_PORT] == str(contract.LISTEN_PORT)
    assert values[contract.ENV_TCP_LISTEN_PORT] == str(contract.TCP_LISTEN_PORT)
    assert values[contract.ENV_TCP_UPSTREAM_PORT] == "8080"


def test_explicit_tcp_upstream_wins() -> None:
    environ = {
        contract.ENV_SLOT: "a",
        contract.ENV_UPSTREAM_PORT: "8080",
        contract.ENV_TCP_UPSTREAM_PORT: "7000",
    }
    assert template_values(environ, load_config(environ))[contract.ENV_TCP_UPSTREAM_PORT] == "7000"


def test_template_path_precedence() -> None:
    plain = load_config({contract.ENV_SLOT: "a"})
    assert template_path(plain, default_exists=False) == DEFAULT_TEMPLATE
    assert template_path(plain, default_exists=True) == Path(contract.BOOTSTRAP_TEMPLATE)
    configured = load_config({contract.ENV_SLOT: "a", contract.ENV_BOOTSTRAP_TEMPLATE: "/x.tmpl"})
    assert template_path(configured, default_exists=True) == Path("/x.tmpl")


def test_default_template_renders_the_documented_listeners() -> None:
    environ = {
        contract.ENV_SLOT: "b",
        contract.ENV_ADMIN_PORT: "9901",
        contract.ENV_UPSTREAM_PORT: "8080",
        contract.ENV_LISTEN_PORT: "15001",
        contract.ENV_TCP_LISTEN_PORT: "15002",
        contract.ENV_TCP_UPSTREAM_PORT: "7000",
    }
    bootstrap = yaml.safe_load(
        render(DEFAULT_TEMPLATE.read_text(), template_values(environ, load_config(environ)))
    )
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    ports = {
        listener["name"]: listener["address"]["socket_address"]["port_value"]
        for listener in bootstrap["static_resources"]["listeners"]
    }
    assert ports == {"http": 15001, "tcp": 15002}
    http2_chain, http1_chain = bootstrap["static_resources"]["listeners"][0]["filter_chains"]
    http2 = http2_chain["filters"][0]["typed_config"]
    http1 = http1_chain["filters"][0]["typed_config"]
    assert http2["codec_type"] == "AUTO" and http1["codec_type"] == "AUTO"
    # h2c goes to the chain that says GOAWAY on idle connections; HTTP/1.x keeps Envoy's defaults.
    assert http2_chain["filter_chain_match"] == {"application_protocols": ["h2c"]}
    assert "filter_chain_match" not in http1_chain
    assert http2["drain_timeout"] == "1.000s"  # contract default parent shutdown: 15 s
    assert http2["common_http_protocol_options"] == {"idle_timeout": "7.500s"}
    assert "drain_timeout" not in http1 and "common_http_protocol_options" not in http1
    assert http1["route_config"] == http2["route_config"] and http1["http_filters"] == http2["http_filters"]
    upstreams = {
        cluster["name"]: cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["port_value"]
        for cluster in bootstrap["static_resources"]["clusters"]
    }
    assert upstreams == {"app": 8080, "app_grpc": 8080, "app_tcp": 7000}
    # WebSocket upgrades on HTTP/1.x; gRPC to the same app port in HTTP/2, every other request in HTTP/1.1.
    assert http1["upgrade_configs"] == [{"upgrade_type": "websocket"}] and "upgrade_configs" not in http2
    grpc_route, default_route = http1["route_config"]["virtual_hosts"][0]["routes"]
    assert grpc_route == {
        "match": {"prefix": "/", "grpc": {}},
        "route": {"cluster": "app_grpc", "timeout": "0s"},
    }
    assert default_route == {"match": {"prefix": "/"}, "route": {"cluster": "app"}}
    clusters = {cluster["name"]: cluster for cluster in bootstrap["static_resources"]["clusters"]}
    options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert clusters["app_grpc"]["typed_extension_protocol_options"][options]["explicit_http_config"] == {
        "http2_protocol_options": {}
    }
    assert "typed_extension_protocol_options" not in clusters["app"]


def test_default_template_needs_the_upstream_port() -> None:
    environ = {contract.ENV_SLOT: "a"}
    with pytest.raises(BootstrapError, match=contract.ENV_UPSTREAM_PORT):
        render(DEFAULT_TEMPLATE.read_text(), template_values(environ, load_config(environ)))


@pytest.mark.parametrize("parent_shutdown", [1, 3, 15, 900])
def test_the_final_goaway_comes_by_0_7_of_the_parent_shutdown(parent_shutdown: int) -> None:
    timings = goaway_timings(parent_shutdown)
    # An idle connection gets its graceful GOAWAY after idle_timeout, its final one drain_timeout later.
    final_goaway = timings.idle_timeout_s + timings.drain_timeout_s
    assert final_goaway <= 0.7 * parent_shutdown + 1e-9
    assert 0 < timings.drain_timeout_s <= 1.0


def test_a_short_parent_shutdown_still_leaves_a_graceful_phase() -> None:
    assert goaway_timings(0) == goaway_timings(1)
    assert goaway_timings(1).drain_timeout_s == pytest.approx(0.2)


def test_values_carry_the_http2_timings_of_the_configured_parent_shutdown() -> None:
    environ = {
        contract.ENV_SLOT: "a",
        contract.ENV_DRAIN_SECONDS: "2",
        contract.ENV_PARENT_SHUTDOWN_SECONDS: "3",
    }
    values = template_values(environ, load_config(environ))
    assert values[HTTP2_DRAIN_TIMEOUT] == "0.600s"
    assert values[HTTP2_IDLE_TIMEOUT] == "1.500s"
