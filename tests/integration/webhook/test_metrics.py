"""/metrics aggregates every gunicorn worker (prometheus-client multiprocess mode)."""

import re
from pathlib import Path

import pytest

from tests.integration.webhook.admission_helpers import review
from tests.integration.webhook.conftest import load_fixture, start_webhook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_counts_from_all_workers_add_up(tmp_path: Path) -> None:
    server = start_webhook(tmp_path, extra_args=["--workers", "2", "--threads", "2"])
    try:
        body = load_fixture("create-pod")["review"]
        opted_out = load_fixture("create-opted-out")["review"]
        with server.client() as client:
            # Fresh connections spread the requests over both workers.
            for _ in range(20):
                with server.client() as fresh:
                    assert fresh.post("/mutate", json=body).status_code == 200
            for _ in range(5):
                assert client.post("/mutate", json=opted_out).status_code == 200
                assert client.post("/mutate", content=b"nope").status_code == 400
            old = body["request"]["object"]
            assert client.post("/validate", json=review(old, old=old, operation="UPDATE")).status_code == 200
            text = client.get("/metrics").text
    finally:
        server.stop()
    assert sample(text, "hotupgrade_webhook_admissions_total", 'endpoint="mutate",result="patched"') == 20
    assert sample(text, "hotupgrade_webhook_admissions_total", 'endpoint="mutate",result="allowed"') == 5
    assert sample(text, "hotupgrade_webhook_admissions_total", 'endpoint="mutate",result="bad_request"') == 5
    assert sample(text, "hotupgrade_webhook_admissions_total", 'endpoint="validate",result="allowed"') == 1
    assert sample(text, "hotupgrade_webhook_injections_total", 'decision="inject"') == 20
    assert sample(text, "hotupgrade_webhook_injections_total", 'decision="opted-out"') == 5
    assert sample(text, "hotupgrade_webhook_admission_duration_seconds_count", 'endpoint="mutate"') == 30
    pids = {e.get("pid") for e in server.log_events()}
    assert pids  # logs parsed
