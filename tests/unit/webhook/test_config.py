"""The config file: defaults, every field parsed, and errors that name the bad field."""

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.config import ConfigError, WebhookConfig, load_config, parse_config
from webhook.podfields import quantity_value

REPO = Path(__file__).resolve().parents[3]
CASES = Path(__file__).parent / "testdata" / "cases"


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
        ({"ports": {"upstream": 15110}}, "ports.upstream"),
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
        # What the API server would reject in every injected pod (issue 10).
        ({"drainSeconds": 1, "parentShutdownSeconds": 1}, "parentShutdownSeconds"),
        (
            {"resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "48Mi"}}},
            "resources.requests.memory",
        ),
        ({"resources": {"requests": {"cpu": "-100m"}}}, "resources.requests.cpu"),
        ({"resources": {"requests": {"gpu": "1"}}}, "resources.requests.gpu"),
        ({"resources": {"requests": {"example.com/gpu": "1"}}}, "resources.limits.example.com/gpu"),
        ({"resources": {"limits": {"example.com/gpu": "1.5"}}}, "resources.limits.example.com/gpu"),
        (
            {"resources": {"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}},
            "resources.requests.example.com/gpu",
        ),
        ({"resources": {"limits": {"hugepages-2Mi": "2Mi"}}}, "resources"),
        (
            {
                "resources": {
                    "requests": {"cpu": "1", "hugepages-2Mi": "2Mi"},
                    "limits": {"hugepages-2Mi": "4Mi"},
                }
            },
            "resources.requests.hugepages-2Mi",
        ),
        ({"resources": {"requests": {"Bad Name": "1"}}}, "resources.requests.Bad Name"),
        ({"shmSizeLimit": "-1Mi"}, "shmSizeLimit"),
        ({"sidecarImage": "sidecar:1 "}, "sidecarImage"),
        ({"runToCompletion": "containers"}, "runToCompletion"),
        ({"securityContext": {"runAsUser": 0}}, "securityContext.runAsUser"),
        ({"securityContext": {"runAsGroup": -1}}, "securityContext.runAsGroup"),
        ({"securityContext": {"runAsNonRoot": "yes"}}, "securityContext.runAsNonRoot"),
        ({"securityContext": {"procMount": "Masked"}}, "securityContext.procMount"),
        (
            {"securityContext": {"seccompProfile": {"type": "Localhost"}}},
            "securityContext.seccompProfile.localhostProfile",
        ),
        (
            {"securityContext": {"seccompProfile": {"type": "RuntimeDefault", "localhostProfile": "x"}}},
            "securityContext.seccompProfile.localhostProfile",
        ),
        (
            {"securityContext": {"appArmorProfile": {"type": "Permissive"}}},
            "securityContext.appArmorProfile.type",
        ),
        ({"securityContext": {"capabilities": {"add": ["net admin"]}}}, "securityContext.capabilities.add"),
        ({"securityContext": {"capabilities": {"keep": []}}}, "securityContext.capabilities.keep"),
        ({"securityContext": {"seLinuxOptions": {"kind": "x"}}}, "securityContext.seLinuxOptions"),
        ({"securityContext": {"windowsOptions": {"hostProcess": True}}}, "securityContext.windowsOptions"),
        ({"securityContext": {"privileged": True}}, "securityContext"),
        ({"securityContext": {"capabilities": {"add": ["CAP_SYS_ADMIN"]}}}, "securityContext"),
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


@pytest.mark.parametrize(
    "context",
    [
        {"allowPrivilegeEscalation": True},
        {"runAsNonRoot": False},
        {"capabilities": {"drop": []}},
        {"capabilities": {"add": ["NET_ADMIN"]}},
        {"seccompProfile": {"type": "Unconfined"}},
        {"appArmorProfile": {"type": "Unconfined"}},
        {"seLinuxOptions": {"type": "spc_t"}},
        {"procMount": "Unmasked"},
    ],
)
def test_a_pair_that_would_break_pod_security_restricted_is_refused(context: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"^securityContext: .*Pod Security restricted"):
        parse_config({"securityContext": context})


def test_the_default_security_context_is_restricted_and_configurable() -> None:
    default = WebhookConfig().security_context.to_json(1337)
    assert default == {
        "runAsUser": 1337,
        "runAsGroup": 1337,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    custom = parse_config(
        {
            "uid": 2000,
            "securityContext": {
                "runAsGroup": 3000,
                "readOnlyRootFilesystem": True,
                "capabilities": {"add": ["NET_BIND_SERVICE"]},
                "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/envoy.json"},
                "appArmorProfile": {"type": "RuntimeDefault"},
                "seLinuxOptions": {"level": "s0:c123,c456"},
            },
        }
    )
    assert custom.security_context.to_json(custom.uid) == {
        "runAsUser": 2000,
        "runAsGroup": 3000,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/envoy.json"},
        "appArmorProfile": {"type": "RuntimeDefault"},
        "seLinuxOptions": {"level": "s0:c123,c456"},
    }
    assert custom.injection_hash() != WebhookConfig().injection_hash()
    assert parse_config({"runToCompletion": "skip"}).injection_hash() != WebhookConfig().injection_hash()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64Mi", Decimal(64 * 2**20)),
        ("100m", Decimal("0.1")),
        ("1e3", Decimal(1000)),
        ("5E-2", Decimal("0.05")),
        ("1E", Decimal(10**18)),
        ("1Ei", Decimal(2**60)),
        (".5", Decimal("0.5")),
        ("+2k", Decimal(2000)),
    ],
)
def test_quantities_are_read_as_the_api_server_reads_them(text: str, value: Decimal) -> None:
    assert quantity_value(text) == value


def _chart_config(overrides_file: Path) -> dict[str, Any]:
    """The chart's injection values with a values file merged over them (Helm merges maps key by key)."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {**base, **{k: merge(base.get(k), v) for k, v in over.items()}}
        return over

    values = yaml.safe_load((REPO / "charts" / "sidecar-hotupgrade" / "values.yaml").read_text())
    merged: dict[str, Any] = merge(
        values["injection"], yaml.safe_load(overrides_file.read_text())["injection"]
    )
    # As templates/configmap.yaml renders it: empty strings and a 0 tcpUpstream mean "unset".
    merged = {k: v for k, v in merged.items() if v != ""}
    merged["ports"] = {k: v for k, v in merged["ports"].items() if not (k == "tcpUpstream" and v == 0)}
    return merged


def test_case_memory_limit_below_the_request_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_chart_config(CASES / "limit-below-request-values.yaml"))
    assert str(caught.value) == "resources.requests.memory: 64Mi must be at most the memory limit 48Mi"


def test_case_parent_shutdown_equal_to_drain_is_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_chart_config(CASES / "drain-equals-parent-shutdown-values.yaml"))
    message = str(caught.value)
    assert message.startswith("parentShutdownSeconds: 1 must exceed drainSeconds (1) by at least 1 s")
    assert "longest request" in message
    assert parse_config({"drainSeconds": 1, "parentShutdownSeconds": 2}).parent_shutdown_seconds == 2


def test_the_chart_defaults_pass() -> None:
    values = yaml.safe_load((REPO / "charts" / "sidecar-hotupgrade" / "values.yaml").read_text())
    empty = (
        REPO
        / "tests"
        / "unit"
        / "webhook"
        / "testdata"
        / "cases"
        / "drain-equals-parent-shutdown-values.yaml"
    )
    assert (
        empty.exists() and values["injection"]["drainSeconds"] < values["injection"]["parentShutdownSeconds"]
    )
