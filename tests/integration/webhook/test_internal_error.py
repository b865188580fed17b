"""An internal error answers as the endpoint's configured failurePolicy says, on the real server.

gunicorn over TLS with the broken cores of failing_cores.py (handed in through create_app): Ignore admits
unchanged with a warning, Fail refuses naming the error; either way a logged traceback and a metric.
The policy comes from the config file and follows it when it changes, as the chart's ConfigMap does.
"""

import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.webhook.admission_helpers import response_of, review
from tests.integration.webhook.conftest import WebhookProcess, load_fixture, start_webhook
from tests.integration.webhook.failing_cores import GUARD_ERROR, PLAN_ERROR

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAILING_CORES = (sys.executable, "-m", "tests.integration.webhook.failing_cores")


def ask(client: httpx.Client, endpoint: str) -> dict[str, Any]:
    """The AdmissionReview response to a Pod CREATE (/mutate) or an injected Pod's UPDATE (/validate)."""
    pod = load_fixture("create-pod")["review"]["request"]["object"]
    body = review(pod) if endpoint == "mutate" else review(pod, old=pod, operation="UPDATE")
    return response_of(client.post(f"/{endpoint}", json=body), body["request"]["uid"])


def ignored(endpoint: str, error: str) -> dict[str, Any]:
    return {
        "allowed": True,
        "warnings": [
            f"hotupgrade webhook: internal error in /{endpoint} ({error}); "
            "admitted unchanged and unchecked (failurePolicy Ignore)"
        ],
    }


def refused(endpoint: str, error: str) -> dict[str, Any]:
    return {
        "allowed": False,
        "status": {
            "code": 500,
            "message": f"hotupgrade webhook: internal error in /{endpoint}, refused "
            f"(failurePolicy Fail): {error}",
        },
    }


def without_uid(response: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response.items() if key != "uid"}


def counted(metrics: str, endpoint: str, result: str) -> float:
    labels = f'endpoint="{endpoint}",result="{result}"'
    match = re.search(rf"^hotupgrade_webhook_admissions_total\{{{labels}\}} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_for_mutate(server: WebhookProcess, expected: dict[str, Any]) -> int:
    """Ask /mutate until it answers `expected`; how many times it was asked."""
    deadline = time.monotonic() + 30
    asked = 1
    with server.client() as client:
        while (answer := without_uid(ask(client, "mutate"))) != expected:
            assert time.monotonic() < deadline, f"still answering {answer}"
            asked += 1
            time.sleep(0.3)
    return asked


def test_internal_errors_follow_each_endpoints_configured_policy(tmp_path: Path) -> None:
    server = start_webhook(
        tmp_path,
        config={"failurePolicy": {"mutate": "Ignore", "validate": "Fail"}},
        command=FAILING_CORES,
    )
    try:
        with server.client() as client:
            assert without_uid(ask(client, "mutate")) == ignored("mutate", "LookupError")
            assert without_uid(ask(client, "validate")) == refused("validate", f"TypeError: {GUARD_ERROR}")
        # The policy is a setting like any other: a changed file flips it without a restart.
        server.write_config({"failurePolicy": {"mutate": "Fail", "validate": "Ignore"}})
        asked = wait_for_mutate(server, refused("mutate", f"LookupError: {PLAN_ERROR}"))
        with server.client() as client:
            assert without_uid(ask(client, "validate")) == ignored("validate", "TypeError")
            metrics = client.get("/metrics").text
    finally:
        server.stop()
    # The first ask, and every ask before the reload landed (within about a second), met Ignore.
    assert counted(metrics, "mutate", "error_ignored") == asked
    assert counted(metrics, "mutate", "error") == 1
    assert counted(metrics, "validate", "error") == counted(metrics, "validate", "error_ignored") == 1
    failures = [e for e in server.log_events() if e["event"] == "admission-failed"]
    assert [(e["endpoint"], e["failure_policy"], e["allowed"]) for e in failures] == [
        ("mutate", "Ignore", True),
        ("validate", "Fail", False),
        *[("mutate", "Ignore", True)] * (asked - 1),
        ("mutate", "Fail", False),
        ("validate", "Ignore", True),
    ]
    assert all(e["level"] == "error" and e["uid"] for e in failures)
    for event in failures:
        assert (PLAN_ERROR if event["endpoint"] == "mutate" else GUARD_ERROR) in event["exception"]
