"""The HTTP shell's error mapping, through Flask's test client (no sockets, no gunicorn)."""

import json
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from webhook.app import create_app
from webhook.config import WebhookConfig
from webhook.config_source import ConfigSource
from webhook.metrics import Metrics

FIXTURE = Path(__file__).parents[2] / "integration" / "webhook" / "fixtures" / "create-pod.json"


class FailingAfterFirstUse(ConfigSource):
    """A config source that breaks once the body has been read: stands in for a bug in a handler."""

    def __init__(self) -> None:
        super().__init__(None)
        self.calls = 0

    def current(self) -> WebhookConfig:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("boom")
        return super().current()


def client(source: ConfigSource) -> tuple[FlaskClient, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return create_app(source, metrics).test_client(), metrics


def review() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(FIXTURE.read_text())["review"]
    return body


def test_a_failure_after_the_uid_is_known_is_a_denial_not_an_http_500() -> None:
    test_client, metrics = client(FailingAfterFirstUse())
    answer = test_client.post("/mutate", json=review())
    assert answer.status_code == 200
    response = answer.get_json()["response"]
    assert response["uid"] == review()["request"]["uid"]
    assert response["allowed"] is False
    assert response["status"] == {"code": 500, "message": "internal error in mutate: boom"}
    assert metrics.admissions.labels("mutate", "error")._value.get() == 1


def test_bad_input_is_counted_and_answered_with_400() -> None:
    test_client, metrics = client(ConfigSource(None))
    answer = test_client.post("/validate", data=b"{}")
    assert answer.status_code == 400
    assert "apiVersion" in answer.get_json()["error"]
    assert metrics.admissions.labels("validate", "bad_request")._value.get() == 1


def test_health_and_metrics_endpoints() -> None:
    test_client, _ = client(ConfigSource(None))
    assert test_client.get("/healthz").data == b"ok\n"
    assert test_client.get("/readyz").status_code == 200
    test_client.post("/mutate", json=review())
    exposition = test_client.get("/metrics").data.decode()
    assert 'hotupgrade_webhook_admissions_total{endpoint="mutate",result="patched"} 1.0' in exposition
    assert 'hotupgrade_webhook_injections_total{decision="inject"} 1.0' in exposition
