"""Transparent inbound capture in the webhook: the config section, which ports a pod gets redirected, the
Pod Security refusal, and the endpoint the chart routes enforcing namespaces to."""

import base64
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from prometheus_client import CollectorRegistry

from webhook import contract
from webhook.app import create_app
from webhook.capture import declared_tcp_ports, forbidden_capabilities
from webhook.config import ConfigError, WebhookConfig, parse_config
from webhook.config_source import ConfigSource
from webhook.inject import decide, inject
from webhook.metrics import Metrics
from webhook.podsecurity import restricted_violations

FIXTURE = Path(__file__).parents[2] / "integration" / "webhook" / "fixtures" / "create-pod.json"


def pod(*ports: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "web:1", "ports": list(ports)}]},
    }


def capture_on(**capture: Any) -> WebhookConfig:
    return parse_config({"capture": {"mode": "iptables", **capture}, "ports": {"tcpUpstream": 9000}})


def capture_container(injected: dict[str, Any]) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        c for c in injected["spec"].get("initContainers", []) if c["name"] == contract.CAPTURE_CONTAINER
    ]
    assert len(found) == 1
    return found[0]


def redirects(injected: dict[str, Any]) -> str:
    [env] = capture_container(injected)["env"]
    assert env["name"] == contract.ENV_CAPTURE_REDIRECTS
    return str(env["value"])


def test_capture_is_off_by_default_and_adds_nothing() -> None:
    config = parse_config({})
    assert not config.capture.enabled
    injected = inject(pod({"containerPort": 8080}), namespace="shop", config=config)
    assert "initContainers" not in injected["spec"]
    # The hash of existing configs does not move: pods injected before capture existed are not "stale".
    assert config.injection_hash() == WebhookConfig().injection_hash()
    assert capture_on().injection_hash() != parse_config({"ports": {"tcpUpstream": 9000}}).injection_hash()


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        # Declared TCP ports: each to the listener that forwards to it.
        ([{"containerPort": 8080}, {"containerPort": 9000, "protocol": "TCP"}], "8080:15110,9000:15111"),
        ([{"containerPort": 9000}], "9000:15111"),
        # UDP and SCTP are not captured.
        ([{"containerPort": 8080}, {"containerPort": 9000, "protocol": "UDP"}], "8080:15110"),
    ],
)
def test_declared_tcp_ports_are_redirected_to_their_listener(
    ports: list[dict[str, Any]], expected: str
) -> None:
    injected = inject(pod(*ports), namespace="shop", config=capture_on())
    assert redirects(injected) == expected
    # First init container, from the sidecar image, running the agent's capture command.
    container = injected["spec"]["initContainers"][0]
    assert container["name"] == contract.CAPTURE_CONTAINER
    assert container["image"] == capture_on().sidecar_image
    assert container["command"] == [contract.AGENT_BINARY, "capture"]
    assert container["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_capture_ports_override_the_declarations() -> None:
    injected = inject(pod({"containerPort": 9090}), namespace="shop", config=capture_on(ports=[8080]))
    assert redirects(injected) == "8080:15110"


@pytest.mark.parametrize(
    ("ports", "detail"),
    [
        ([{"containerPort": 8080}, {"containerPort": 9090}], "containerPort 9090 is not forwarded by Envoy"),
        ([], "declare no TCP containerPort"),
        ([{"containerPort": 53, "protocol": "UDP"}], "declare no TCP containerPort"),
    ],
)
def test_a_pod_that_cannot_be_captured_is_refused_with_the_reason(
    ports: list[dict[str, Any]], detail: str
) -> None:
    decision = decide(pod(*ports), namespace="shop", config=capture_on())
    assert (decision.inject, decision.reason) == (False, "capture-ports")
    assert detail in decision.warning
    assert inject(pod(*ports), namespace="shop", config=capture_on()) == pod(*ports)


def test_a_namespace_enforcing_pod_security_gets_no_capture_and_says_why() -> None:
    the_pod = pod({"containerPort": 8080})
    decision = decide(the_pod, namespace="shop", config=capture_on(), pod_security_enforced=True)
    assert (decision.inject, decision.reason) == (False, "capture-pod-security")
    assert "needs NET_ADMIN" in decision.warning and "namespace shop enforces" in decision.warning
    assert forbidden_capabilities() == ["NET_ADMIN"]
    # Without capture, the flag changes nothing: the pair passes `restricted` by itself.
    plain = parse_config({})
    assert decide(the_pod, namespace="shop", config=plain, pod_security_enforced=True).inject


def test_the_capture_container_is_what_pod_security_restricted_refuses() -> None:
    injected = inject(pod({"containerPort": 8080}), namespace="shop", config=capture_on())
    culprits = {(v.check, c) for v in restricted_violations(injected) for c in v.culprits}
    assert ("capabilities_restricted", contract.CAPTURE_CONTAINER) in culprits
    assert {c for _, c in culprits} >= {contract.CAPTURE_CONTAINER}
    assert all(c in (contract.CAPTURE_CONTAINER, "web") for _, c in culprits)


def test_a_pod_that_already_has_a_capture_container_is_not_injected() -> None:
    the_pod = pod({"containerPort": 8080})
    the_pod["spec"]["initContainers"] = [{"name": contract.CAPTURE_CONTAINER, "image": "x"}]
    assert decide(the_pod, namespace="shop", config=capture_on()).reason == "container-name-taken"


def test_declared_ports_are_listed_once_in_order() -> None:
    the_pod = pod({"containerPort": 9000}, {"containerPort": 8080}, {"containerPort": 9000})
    the_pod["spec"]["containers"].append({"name": "b", "ports": [{"containerPort": 7000}]})
    assert declared_tcp_ports(the_pod) == [9000, 8080, 7000]


@pytest.mark.parametrize(
    ("capture", "message"),
    [
        ({"mode": "ebpf"}, "capture.mode: must be one of none, iptables"),
        ({"mode": "iptables", "ports": [0]}, r"capture.ports\[0\]: must be an integer in 1..65535"),
        ({"mode": "iptables", "ports": [8080, 8080]}, "listed twice"),
        ({"mode": "iptables", "ports": [9090]}, r"capture.ports\[0\]: 9090 is not a port Envoy forwards to"),
        ({"mode": "iptables", "extra": 1}, "capture.extra: unknown field"),
    ],
)
def test_bad_capture_config_is_refused_naming_the_field(capture: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"capture": capture})


def test_capture_needs_the_static_bootstrap() -> None:
    with pytest.raises(ConfigError, match=r"capture\.mode: iptables needs bootstrap\.mode static"):
        parse_config(
            {"capture": {"mode": "iptables"}, "bootstrap": {"mode": "xds", "xds": {"address": "cp:18000"}}}
        )


def _mutate(tmp_path: Path, path: str) -> dict[str, Any]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"capture": {"mode": "iptables"}}))
    app = create_app(ConfigSource(config), Metrics(CollectorRegistry()))
    body = json.loads(FIXTURE.read_text())["review"]
    response: dict[str, Any] = app.test_client().post(path, json=body).get_json()["response"]
    return response


def test_the_pod_security_endpoint_refuses_capture_and_the_plain_one_injects_it(tmp_path: Path) -> None:
    plain = _mutate(tmp_path, "/mutate")
    body = json.loads(FIXTURE.read_text())["review"]["request"]["object"]
    patched = jsonpatch.apply_patch(body, json.loads(base64.b64decode(plain["patch"])))
    assert redirects(patched) == "8080:15110"
    enforced = _mutate(tmp_path, "/mutate/pod-security-enforced")
    assert enforced["allowed"] is True and "patch" not in enforced
    [warning] = enforced["warnings"]
    assert "capture-pod-security" in warning
