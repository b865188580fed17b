"""The config file: defaults, every field parsed, and errors that name the bad field."""

from pathlib import Path

import pytest
import yaml

from webhook.config import ConfigError, WebhookConfig, load_config, parse_config


def test_no_file_and_an_empty_file_give_the_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(None) == WebhookConfig() == load_config(empty) == parse_config({})
    defaults = WebhookConfig()
    assert defaults.sidecar_image == "sidecar-hotupgrade/sidecar:0.1.0"
    assert defaults.empty_image == "sidecar-hotupgrade/empty:0.1.0"
    assert defaults.container_names == ("hotupgrade-a", "hotupgrade-b")
    assert defaults.certificates.mode == "files"
    # Like the chart's default and the API server's: an internal error refuses rather than admits.
    assert (defaults.failure_policy.mutate, defaults.failure_policy.validate) == ("Fail", "Fail")


def test_a_full_file_is_parsed() -> None:
    raw = yaml.safe_load(
        """
        sidecarImage: s:2
        emptyImage: e:2
        containerNames: [left, right]
        mode: nativeSidecar
        holdApplicationUntilProxyStarts: false
        uid: 4242
        resources: {requests: {cpu: 10m}, limits: {memory: 1Gi, example.com/gpu: 1}}
        drainSeconds: 3
        parentShutdownSeconds: 4
        ports: {statusA: 1001, statusB: 1002, admin: 1000, listen: 1003, tcpListen: 1004, upstream: 80}
        env: {A: b}
        controllerServiceAccount: system:serviceaccount:ops:upgrader
        certificates:
          {mode: self-signed, secretName: s, serviceName: svc, serviceNamespace: ops, renewBeforeDays: 7}
        failurePolicy: {mutate: Ignore, validate: Fail}
        """
    )
    config = parse_config(raw)
    assert config.container_names == ("left", "right")
    assert config.mode == "nativeSidecar" and not config.hold_application_until_proxy_starts
    assert config.resources.to_json() == {
        "requests": {"cpu": "10m"},
        "limits": {"example.com/gpu": "1", "memory": "1Gi"},
    }
    assert (config.ports.listen, config.ports.effective_tcp_upstream()) == (1003, 80)
    assert config.env == (("A", "b"),)
    assert config.certificates.mode == "self-signed" and config.certificates.renew_before_days == 7
    assert config.failure_policy.of("mutate") == "Ignore"
    assert config.failure_policy.of("validate") == "Fail"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"sidecarImage": ""}, "sidecarImage"),
        ({"containerNames": ["a"]}, "containerNames"),
        ({"containerNames": ["a", "a"]}, "containerNames"),
        ({"containerNames": ["a", "Bad_Name"]}, "containerNames[1]"),
        ({"mode": "sidecars"}, "mode"),
        ({"uid": 0}, "uid"),
        ({"uid": "1337"}, "uid"),
        ({"holdApplicationUntilProxyStarts": "yes"}, "holdApplicationUntilProxyStarts"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
        ({"resources": {"limit": {}}}, "resources.limit"),
        ({"drainSeconds": 20, "parentShutdownSeconds": 10}, "parentShutdownSeconds"),
        ({"ports": {"admin": 70000}}, "ports.admin"),
        ({"ports": {"statusB": 15101}}, "ports.statusB"),
        ({"ports": {"upstream": 15001}}, "ports.upstream"),
        ({"env": {"HOTUPGRADE_SLOT": "a"}}, "env.HOTUPGRADE_SLOT"),
        ({"env": {"X": [1]}}, "env.X"),
        ({"controllerServiceAccount": "bob"}, "controllerServiceAccount"),
        ({"certificates": {"mode": "acme"}}, "certificates.mode"),
        ({"certificates": {"validityDays": 10, "renewBeforeDays": 10}}, "certificates.renewBeforeDays"),
        ({"sidecarimage": "typo"}, "sidecarimage"),
        ({"shmSizeLimit": "big"}, "shmSizeLimit"),
        ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
        ({"failurePolicy": {"mutate": "ignore"}}, "failurePolicy.mutate"),
        ({"failurePolicy": {"validating": "Ignore"}}, "failurePolicy.validating"),
        ({"failurePolicy": "Ignore"}, "failurePolicy"),
        ([], "config"),
    ],
)
def test_errors_name_the_bad_field(raw: object, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert str(caught.value).startswith(f"{field}:"), str(caught.value)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sidecarImage: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # Any other error would escape ConfigSource's "keep the last good config" on a reload.
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"sidecarImage: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_injection_hash_follows_what_shapes_the_injection() -> None:
    base = WebhookConfig().injection_hash()
    assert parse_config({"sidecarImage": "other:1"}).injection_hash() != base
    assert parse_config({"drainSeconds": 5}).injection_hash() != base
    # Settings that do not shape the pod leave it alone.
    assert parse_config({"maxRequestBytes": 2048}).injection_hash() == base
    assert parse_config({"controllerServiceAccount": "system:serviceaccount:a:b"}).injection_hash() == base
    assert parse_config({"failurePolicy": {"mutate": "Ignore"}}).injection_hash() == base
