"""Issue 10's case files through the real webhook (gunicorn, TLS): decisions, warnings, log lines, metrics.

The cases live verbatim in tests/unit/webhook/testdata/cases; the two guard cases are AdmissionReviews as
the API server sends them and are posted unchanged.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest

from tests.integration.webhook.admission_helpers import apply, patch_of, response_of, review
from tests.integration.webhook.conftest import WebhookProcess, start_webhook
from webhook.podsecurity import restricted_violations

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CASES = Path(__file__).resolve().parents[2] / "unit" / "webhook" / "testdata" / "cases"


def case(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CASES / name).read_text())
    return data


def mutate(client: httpx.Client, pod: dict[str, Any]) -> dict[str, Any]:
    body = review(pod, namespace=pod["metadata"]["namespace"])
    return response_of(client.post("/mutate", json=body), body["request"]["uid"])


def metric(client: httpx.Client, line_start: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_restricted_pod_stays_restricted(client: httpx.Client) -> None:
    pod = case("restricted-pod.json")
    response = mutate(client, pod)
    assert response["allowed"] is True and "warnings" not in response
    injected = apply(pod, patch_of(response))
    kubernetes_validate.validate(injected, kubernetes_validate.latest_version(), strict=True)
    assert [c["name"] for c in injected["spec"]["containers"]] == ["hotupgrade-a", "hotupgrade-b", "catalog"]
    assert restricted_violations(injected) == []


@pytest.fixture(scope="module")
def old_ports_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """A server whose pair binds the ports the defaults had before issue 10 moved them out of Istio's
    15000-15090 (listen 15001, tcpListen 15002): the ports both case files were written against."""
    server = start_webhook(
        tmp_path_factory.mktemp("old-ports"), config={"ports": {"listen": 15001, "tcpListen": 15002}}
    )
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("name", "decision", "words"),
    [
        ("app-port-clash-pod.json", "port-clash", ["15002", "ports.tcpListen", "'ledger'"]),
        ("istio-injected-pod.json", "coresident-proxy", ["istio", "15001 (ports.listen)"]),
    ],
)
def test_a_clash_is_admitted_without_the_pair_with_a_warning_a_log_line_and_a_metric(
    old_ports_webhook: WebhookProcess, name: str, decision: str, words: list[str]
) -> None:
    counter = f'hotupgrade_webhook_injections_total{{decision="{decision}"}}'
    with old_ports_webhook.client() as client:
        before = metric(client, counter)
        response = mutate(client, case(name))
        assert response["allowed"] is True and patch_of(response) == []
        [warning] = response["warnings"]
        assert warning.startswith(f"hotupgrade: sidecar not injected ({decision};")
        assert all(word in warning for word in words), warning
        assert metric(client, counter) == before + 1
    events = [
        e for e in old_ports_webhook.log_events() if e["event"] == "mutate" and e["decision"] == decision
    ]
    assert events and events[-1]["level"] == "warning" and events[-1]["detail"] == warning


@pytest.mark.parametrize("name", ["app-port-clash-pod.json", "istio-injected-pod.json"])
def test_with_the_default_ports_both_clash_cases_get_the_pair(client: httpx.Client, name: str) -> None:
    pod = case(name)
    response = mutate(client, pod)
    assert response["allowed"] is True and "warnings" not in response
    injected = apply(pod, patch_of(response))
    kubernetes_validate.validate(injected, kubernetes_validate.latest_version(), strict=True)
    names = [c["name"] for c in injected["spec"]["containers"]]
    assert names[:2] == ["hotupgrade-a", "hotupgrade-b"], names


def test_the_job_pod_gets_native_sidecars(client: httpx.Client) -> None:
    pod = case("job-pod.json")
    response = mutate(client, pod)
    assert "warnings" not in response
    injected = apply(pod, patch_of(response))
    kubernetes_validate.validate(injected, kubernetes_validate.latest_version(), strict=True)
    spec = injected["spec"]
    assert [c["name"] for c in spec["containers"]] == ["report"]
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [
        ("hotupgrade-a", "Always"),
        ("hotupgrade-b", "Always"),
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("guard-remove-status-review.json", "protected-annotation"),
        ("guard-then-set-image-review.json", "pair-image-change"),
    ],
)
def test_the_guard_cases_are_denied_step_by_step(
    webhook: WebhookProcess, client: httpx.Client, name: str, reason: str
) -> None:
    body = case(name)
    counter = f'hotupgrade_webhook_denials_total{{reason="{reason}"}}'
    before = metric(client, counter)
    response = response_of(client.post("/validate", json=body), body["request"]["uid"])
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert "hotupgrade.io/target-image" in response["status"]["message"]
    assert metric(client, counter) == before + 1
    denied = [e for e in webhook.log_events() if e["event"] == "guard-denied" and e["reason"] == reason]
    assert denied and denied[-1]["user"] == body["request"]["userInfo"]["username"]
