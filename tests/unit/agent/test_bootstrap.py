"""Bootstrap templates: substitution from the environment, clear errors, and the shipped default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE, BootstrapError, render, template_path, template_values
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
    http_filter = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    assert http_filter["typed_config"]["codec_type"] == "AUTO"
    upstreams = {
        cluster["name"]: cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
            "socket_address"
        ]["port_value"]
        for cluster in bootstrap["static_resources"]["clusters"]
    }
    assert upstreams == {"app": 8080, "app_tcp": 7000}


def test_default_template_needs_the_upstream_port() -> None:
    environ = {contract.ENV_SLOT: "a"}
    with pytest.raises(BootstrapError, match=contract.ENV_UPSTREAM_PORT):
        render(DEFAULT_TEMPLATE.read_text(), template_values(environ, load_config(environ)))
