"""The HTTP shell's error mapping, through Flask's test client (no sockets, no gunicorn)."""

import json
import logging
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from webhook.app import create_app
from webhook.config_source import ConfigSource
from webhook.metrics import Metrics

FIXTURE = Path(__file__).parents[2] / "integration" / "webhook" / "fixtures" / "create-pod.json"


class Broken:
    """A pure core (planner or guard) with a bug: raises `error` whatever it is asked."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, *args: object, **kwargs: object) -> NoReturn:
        raise self.error


def client(source: ConfigSource, *, broken: Exception | None = None) -> tuple[FlaskClient, Metrics]:
    metrics = Metrics(CollectorRegistry())
    if broken is None:
        return create_app(source, metrics).test_client(), metrics
    app = create_app(source, metrics, plan=Broken(broken), guard=Broken(broken))
    return app.test_client(), metrics


def configured(tmp_path: Path, config: dict[str, Any]) -> ConfigSource:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return ConfigSource(path)


def review() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(FIXTURE.read_text())["review"]
    return body


def update_review() -> dict[str, Any]:
    body = review()
    body["request"].update(operation="UPDATE", oldObject=body["request"]["object"])
    return body


def failed_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, bool]]:
    """(endpoint, failure policy, allowed) of each `admission-failed` event, checked to carry a traceback."""
    events = []
    for record in caplog.records:
        if record.getMessage() == "admission-failed":
            fields: dict[str, Any] = getattr(record, "fields", {})
            assert record.levelno == logging.ERROR and record.exc_info is not None
            events.append((fields["endpoint"], fields["failure_policy"], fields["allowed"]))
    return events


def expected_answer(endpoint: str, policy: str) -> dict[str, Any]:
    """The response to a KeyError('containers') in `endpoint` under `policy`, less the uid."""
    if policy == "Ignore":
        warning = f"hotupgrade webhook: internal error in /{endpoint} (KeyError); admitted unchanged"
        return {"allowed": True, "warnings": [f"{warning} and unchecked (failurePolicy Ignore)"]}
    message = f"hotupgrade webhook: internal error in /{endpoint}, refused (failurePolicy Fail)"
    return {"allowed": False, "status": {"code": 500, "message": f"{message}: KeyError: 'containers'"}}


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_an_internal_error_is_answered_under_the_configured_failure_policy_never_with_http_500(
    policy: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = configured(tmp_path, {"failurePolicy": {"mutate": policy, "validate": policy}})
    test_client, metrics = client(source, broken=KeyError("containers"))
    counted, not_counted = ("error", "error_ignored") if policy == "Fail" else ("error_ignored", "error")
    for endpoint, body in (("mutate", review()), ("validate", update_review())):
        answer = test_client.post(f"/{endpoint}", json=body)
        assert answer.status_code == 200
        response = answer.get_json()["response"]
        assert response == {"uid": body["request"]["uid"], **expected_answer(endpoint, policy)}
        assert metrics.admissions.labels(endpoint, counted)._value.get() == 1
        assert metrics.admissions.labels(endpoint, not_counted)._value.get() == 0
    allowed = policy == "Ignore"
    assert failed_events(caplog) == [("mutate", policy, allowed), ("validate", policy, allowed)]


def test_with_no_config_an_internal_error_is_refused() -> None:
    test_client, metrics = client(ConfigSource(None), broken=KeyError("containers"))
    response = test_client.post("/mutate", json=review()).get_json()["response"]
    del response["uid"]
    assert response == expected_answer("mutate", "Fail")
    assert metrics.admissions.labels("mutate", "error")._value.get() == 1


def test_each_endpoint_answers_an_internal_error_with_its_own_policy(tmp_path: Path) -> None:
    source = configured(tmp_path, {"failurePolicy": {"mutate": "Fail", "validate": "Ignore"}})
    test_client, _ = client(source, broken=RuntimeError("boom"))
    assert test_client.post("/mutate", json=review()).get_json()["response"]["allowed"] is False
    assert test_client.post("/validate", json=update_review()).get_json()["response"]["allowed"] is True


def test_bad_input_is_still_a_400_whatever_the_policy(tmp_path: Path) -> None:
    source = configured(tmp_path, {"failurePolicy": {"mutate": "Ignore", "validate": "Ignore"}})
    test_client, metrics = client(source, broken=RuntimeError("boom"))
    request = review()["request"]
    request["object"] = None
    answer = test_client.post("/mutate", json={**review(), "request": request})
    assert answer.status_code == 400
    assert metrics.admissions.labels("mutate", "bad_request")._value.get() == 1


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
