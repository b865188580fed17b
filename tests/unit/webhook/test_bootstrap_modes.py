"""The webhook config's `bootstrap` section and `takeoverDeadlineSeconds`: parsing, refusals, injection."""

from __future__ import annotations

from typing import Any

import pytest

from webhook import contract
from webhook.bootstrap import Bootstrap, CustomBootstrap, XdsBootstrap
from webhook.config import ConfigError, WebhookConfig, parse_config
from webhook.inject import inject, sidecar_env

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web"},
    "spec": {"containers": []},
}


def env_of(config: WebhookConfig) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in sidecar_env("a", config)}


def test_defaults_are_the_static_mode_and_the_contracts_deadline() -> None:
    config = parse_config({})
    assert config.bootstrap == Bootstrap() == Bootstrap(mode="static")
    assert config.takeover_deadline_seconds == contract.TAKEOVER_DEADLINE_SECONDS
    env = env_of(config)
    assert env[contract.ENV_BOOTSTRAP_MODE]["value"] == "static"
    assert env[contract.ENV_TAKEOVER_DEADLINE_SECONDS]["value"] == str(contract.TAKEOVER_DEADLINE_SECONDS)
    assert env[contract.ENV_BOOTSTRAP_TEMPLATE]["value"] == contract.BOOTSTRAP_TEMPLATE
    assert contract.ENV_XDS_ADDRESS not in env


def test_the_charts_empty_strings_mean_unset() -> None:
    raw = {
        "bootstrap": {
            "mode": "static",
            "xds": {"address": "", "clusterLabel": ""},
            "custom": {"configMap": ""},
        }
    }
    assert parse_config(raw).bootstrap == Bootstrap()


def test_xds_mode_passes_the_address_and_the_cluster_label_by_the_downward_api() -> None:
    config = parse_config(
        {"bootstrap": {"mode": "xds", "xds": {"address": "[fd00::7]:18000", "clusterLabel": "app"}}}
    )
    assert config.bootstrap.xds == XdsBootstrap(address="[fd00::7]:18000", cluster_label="app")
    env = env_of(config)
    assert env[contract.ENV_BOOTSTRAP_MODE]["value"] == "xds"
    assert env[contract.ENV_XDS_ADDRESS]["value"] == "[fd00::7]:18000"
    field = env[contract.ENV_XDS_NODE_CLUSTER]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['app']"
    unlabelled = env_of(parse_config({"bootstrap": {"mode": "xds", "xds": {"address": "xds:18000"}}}))
    assert contract.ENV_XDS_NODE_CLUSTER not in unlabelled, "the agent falls back to the namespace"


def test_custom_mode_with_a_config_map_mounts_it_into_both_containers() -> None:
    config = parse_config({"bootstrap": {"mode": "custom", "custom": {"configMap": "envoy-bootstrap"}}})
    assert config.bootstrap.custom == CustomBootstrap(config_map="envoy-bootstrap", key="envoy.yaml.tmpl")
    pod = inject(POD, namespace="default", config=config)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == contract.BOOTSTRAP_VOLUME]
    assert volume["configMap"] == {
        "name": "envoy-bootstrap",
        "items": [{"key": "envoy.yaml.tmpl", "path": "envoy.yaml.tmpl"}],
    }
    for container in pod["spec"]["containers"]:
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts[contract.BOOTSTRAP_VOLUME]["mountPath"] == contract.BOOTSTRAP_CONFIG_DIR
        assert mounts[contract.BOOTSTRAP_VOLUME]["readOnly"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[contract.ENV_BOOTSTRAP_TEMPLATE] == f"{contract.BOOTSTRAP_CONFIG_DIR}/envoy.yaml.tmpl"


def test_custom_mode_without_a_config_map_uses_the_images_template_and_no_volume() -> None:
    config = parse_config({"bootstrapTemplate": "/etc/mesh/envoy.tmpl", "bootstrap": {"mode": "custom"}})
    assert env_of(config)[contract.ENV_BOOTSTRAP_TEMPLATE]["value"] == "/etc/mesh/envoy.tmpl"
    pod = inject(POD, namespace="default", config=config)
    assert contract.BOOTSTRAP_VOLUME not in {v["name"] for v in pod["spec"]["volumes"]}


def test_a_config_map_outside_custom_mode_is_not_mounted() -> None:
    config = parse_config({"bootstrap": {"mode": "static", "custom": {"configMap": "envoy-bootstrap"}}})
    pod = inject(POD, namespace="default", config=config)
    assert contract.BOOTSTRAP_VOLUME not in {v["name"] for v in pod["spec"]["volumes"]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bootstrap": {"mode": "dynamic"}}, "bootstrap.mode: must be one of static, xds, custom"),
        ({"bootstrap": {"mode": "xds"}}, "bootstrap.xds.address: must be set when bootstrap.mode is xds"),
        (
            {"bootstrap": {"mode": "xds", "xds": {"address": "xds"}}},
            "bootstrap.xds.address: 'xds' is not valid",
        ),
        ({"bootstrap": {"xds": {"address": "fd00::7:18000"}}}, "bootstrap.xds.address"),
        ({"bootstrap": {"xds": {"address": "xds:99999"}}}, "the port must be 1..65535"),
        ({"bootstrap": {"xds": {"clusterLabel": "-bad"}}}, "bootstrap.xds.clusterLabel"),
        ({"bootstrap": {"custom": {"configMap": "Upper"}}}, "bootstrap.custom.configMap"),
        ({"bootstrap": {"custom": {"key": "a/b"}}}, "bootstrap.custom.key"),
        ({"bootstrap": {"custom": {"file": "x"}}}, "bootstrap.custom.file: unknown field"),
        ({"bootstrap": "xds"}, "bootstrap: must be a mapping"),
        ({"takeoverDeadlineSeconds": 0}, "takeoverDeadlineSeconds: must be an integer in 1..3600"),
        (
            {"takeoverDeadlineSeconds": 120, "waitTimeoutSeconds": 120},
            "takeoverDeadlineSeconds: 120 must be less than waitTimeoutSeconds",
        ),
    ],
)
def test_refusals_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse_config(raw)


def test_the_mode_changes_the_injection_hash() -> None:
    static = parse_config({})
    xds = parse_config({"bootstrap": {"mode": "xds", "xds": {"address": "xds:18000"}}})
    assert static.injection_hash() != xds.injection_hash()
    assert parse_config({"takeoverDeadlineSeconds": 30}).injection_hash() != static.injection_hash()
