"""Injected pods on the real kube-apiserver: PodSecurity `restricted` admits them, validation accepts them.

Server-side dry-run creates (nothing is stored, nothing runs) of every golden and case pod as the injector
returns it, in a namespace labelled pod-security.kubernetes.io/enforce=restricted, and with the config
checks bypassed to show that what the webhook refuses is what the API server would refuse. The pure check
(webhook.podsecurity) must agree with the API server's verdict on every pod.
"""

import json
import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config

from tests.integration.apiserver import reachable_kubeconfig
from tests.integration.webhook.admission_helpers import ensure_default_service_account
from webhook.config import ConfigError, Resources, WebhookConfig, parse_config
from webhook.inject import decide, inject
from webhook.podfields import Profile, SecurityContext
from webhook.podsecurity import restricted_violations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TESTDATA = Path(__file__).resolve().parents[2] / "unit" / "webhook" / "testdata"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def golden_inputs() -> list[tuple[str, dict[str, Any], WebhookConfig]]:
    """Every golden input the injector injects: (case, pod, config)."""
    cases = []
    for path in sorted(TESTDATA.glob("*.input.yaml")):
        data = yaml.safe_load(path.read_text())
        pod = yaml.safe_load((TESTDATA / data["podFile"]).read_text()) if "podFile" in data else data["pod"]
        config = parse_config(data.get("config"))
        if decide(pod, namespace=data["namespace"], config=config).inject:
            cases.append((path.name.removesuffix(".input.yaml"), pod, config))
    return cases


CASES = golden_inputs()


@pytest.fixture(scope="module")
def core() -> Any:
    api = kube_config.new_client_from_config(config_file=reachable_kubeconfig())  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api)


def make_namespace(core: Any, labels: dict[str, str]) -> str:
    name = f"hu-psa-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": labels}})
    ensure_default_service_account(core, name)
    return name


@pytest.fixture(scope="module")
def restricted_namespace(core: Any) -> Iterator[str]:
    name = make_namespace(core, RESTRICTED)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def plain_namespace(core: Any) -> Iterator[str]:
    name = make_namespace(core, {})
    yield name
    core.delete_namespace(name)


def dry_run_create(core: Any, namespace: str, pod: dict[str, Any]) -> str | None:
    """None if the API server would create the pod, else its error message."""
    body = {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}
    try:
        core.create_namespaced_pod(namespace, body, dry_run="All")
    except client.ApiException as exc:
        message: str = json.loads(exc.body or "{}").get("message", str(exc))
        return message
    return None


@pytest.mark.parametrize(("case", "pod", "config"), CASES, ids=[c[0] for c in CASES])
def test_the_pair_never_brings_a_pod_security_violation(
    core: Any, restricted_namespace: str, case: str, pod: dict[str, Any], config: WebhookConfig
) -> None:
    injected = inject(pod, namespace=restricted_namespace, config=config)
    error = dry_run_create(core, restricted_namespace, injected)
    # The pure check and PodSecurity admission agree, pod by pod.
    assert (error is None) == (restricted_violations(injected) == []), error
    if error is not None:  # the app itself is not restricted: the API server must blame only the app
        assert "violates PodSecurity" in error, error
        for name in config.container_names:
            assert f'"{name}"' not in error, error
    if restricted_violations(pod) == []:
        assert error is None, error


def test_the_case_pod_is_admitted_and_the_pair_of_before_was_not(
    core: Any, restricted_namespace: str
) -> None:
    [(_, pod, config)] = [c for c in CASES if c[0] == "restricted-pod"]
    injected = inject(pod, namespace=restricted_namespace, config=config)
    assert dry_run_create(core, restricted_namespace, injected) is None
    for container in injected["spec"]["containers"][:2]:
        del container["securityContext"]["seccompProfile"]  # the pair as injected before issue 10
    error = dry_run_create(core, restricted_namespace, injected)
    assert error is not None and "seccompProfile" in error and '"hotupgrade-a", "hotupgrade-b"' in error, (
        error
    )


@pytest.mark.parametrize(("case", "pod", "config"), CASES, ids=[c[0] for c in CASES])
def test_every_injected_pod_passes_api_validation(
    core: Any, plain_namespace: str, case: str, pod: dict[str, Any], config: WebhookConfig
) -> None:
    assert (
        dry_run_create(core, plain_namespace, inject(pod, namespace=plain_namespace, config=config)) is None
    )


# Configs the webhook refuses, built around its checks, and what the API server says of the pods they make.
REFUSED: dict[str, tuple[dict[str, Any], WebhookConfig, str]] = {
    "memory limit below request": (
        {"resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "48Mi"}}},
        replace(
            WebhookConfig(), resources=Resources(requests=(("memory", "64Mi"),), limits=(("memory", "48Mi"),))
        ),
        "must be less than or equal to memory limit",
    ),
    "extended resource request without limit": (
        {"resources": {"requests": {"example.com/gpu": "1"}}},
        replace(WebhookConfig(), resources=Resources(requests=(("example.com/gpu", "1"),), limits=())),
        "Limit must be set for non overcommitable resources",
    ),
    "not a container resource": (
        {"resources": {"requests": {"gpu": "1"}}},
        replace(WebhookConfig(), resources=Resources(requests=(("gpu", "1"),), limits=())),
        "must be a standard resource for containers",
    ),
    "Localhost seccomp without its profile": (
        {"securityContext": {"seccompProfile": {"type": "Localhost"}}},
        replace(WebhookConfig(), security_context=SecurityContext(seccomp_profile=Profile("Localhost"))),
        "localhostProfile",
    ),
    "privileged without escalation": (
        {"securityContext": {"privileged": True}},
        replace(WebhookConfig(), security_context=SecurityContext(privileged=True)),
        "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
    ),
}


@pytest.mark.parametrize("name", REFUSED)
def test_what_the_config_refuses_the_api_server_refuses(core: Any, plain_namespace: str, name: str) -> None:
    raw, bypassed, api_message = REFUSED[name]
    with pytest.raises(ConfigError):
        parse_config(raw)
    [(_, pod, _)] = [c for c in CASES if c[0] == "minimal"]
    error = dry_run_create(core, plain_namespace, inject(pod, namespace=plain_namespace, config=bypassed))
    assert error is not None and api_message in error, error


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_pod_security_rejects_the_capture_container_so_the_webhook_refuses_capture_there(
    core: Any, level: str
) -> None:
    # Capture's init container needs NET_ADMIN: PodSecurity at either level would reject the pod, so the
    # webhook, told by the chart's selectors that the namespace enforces the level, refuses capture.
    namespace = make_namespace(
        core,
        {"pod-security.kubernetes.io/enforce": level, "pod-security.kubernetes.io/enforce-version": "latest"},
    )
    try:
        [(_, pod, _)] = [c for c in CASES if c[0] == "restricted-pod"]
        capture = parse_config({"capture": {"mode": "iptables", "ports": [8080]}})
        error = dry_run_create(core, namespace, inject(pod, namespace=namespace, config=capture))
        assert error is not None and "violates PodSecurity" in error, error
        assert '"hotupgrade-capture"' in error and "NET_ADMIN" in error, error
        decision = decide(pod, namespace=namespace, config=capture, pod_security_enforced=True)
        assert (decision.inject, decision.reason) == (False, "capture-pod-security")
        # The pair without capture is admitted at both levels.
        assert (
            dry_run_create(core, namespace, inject(pod, namespace=namespace, config=WebhookConfig())) is None
        )
    finally:
        core.delete_namespace(namespace)
