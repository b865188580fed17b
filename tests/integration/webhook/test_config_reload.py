"""The config file is validated at startup and reloaded when it changes; a bad new file keeps the old one."""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.webhook.admission_helpers import patch_of, response_of
from tests.integration.webhook.conftest import CLI, WebhookProcess, load_fixture, start_webhook, write_tls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def injected_image(server: WebhookProcess) -> str:
    body = load_fixture("create-pod")["review"]
    with server.client() as client:
        patch = patch_of(response_of(client.post("/mutate", json=body), body["request"]["uid"]))
    containers = [op["value"] for op in patch if op["path"].startswith("/spec/containers/")]
    image: str = containers[0]["image"]
    return image


def wait_for_image(server: WebhookProcess, image: str) -> None:
    # Every worker re-reads on its own schedule (at most once a second): ask until all have switched.
    deadline = time.monotonic() + 30
    seen: list[str] = []
    while time.monotonic() < deadline:
        seen = [injected_image(server) for _ in range(8)]
        if set(seen) == {image}:
            return
        time.sleep(0.3)
    raise AssertionError(f"still injecting {seen}")


def test_a_changed_config_is_used_without_restart_and_a_bad_one_is_ignored(tmp_path: Path) -> None:
    server = start_webhook(tmp_path, config={"sidecarImage": "localhost/sidecar:1"})
    try:
        assert injected_image(server) == "localhost/sidecar:1"
        server.write_config({"sidecarImage": "localhost/sidecar:2"})
        wait_for_image(server, "localhost/sidecar:2")
        server.write_config({"sidecarImage": "localhost/sidecar:3", "mode": "bogus"})
        time.sleep(2.5)
        assert {injected_image(server) for _ in range(8)} == {"localhost/sidecar:2"}
        failures = [e for e in server.log_events() if e["event"] == "config-reload-failed"]
        assert failures and "mode" in failures[0]["error"]
        with server.client() as client:
            metrics = client.get("/metrics").text
        assert 'hotupgrade_webhook_config_reloads_total{result="error"}' in metrics
    finally:
        server.stop()


def test_an_invalid_config_at_startup_fails_naming_the_field(tmp_path: Path) -> None:
    tls = write_tls(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text("ports:\n  admin: 99999\n")
    result = subprocess.run(
        [
            str(CLI),
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            str(tls.cert),
            "--tls-key",
            str(tls.key),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "ports.admin" in result.stderr


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sidecarImage: localhost/s:9\n")
    result = check_config(config)
    assert result.returncode == 0, result.stderr
    assert '"sidecar_image": "localhost/s:9"' in result.stdout


# The two chart-values cases of issue 10, as the webhook's config file (the chart's defaults merged in).
API_SERVER_WOULD_REFUSE = {
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "48Mi"}},
}
CANNOT_BE_HITLESS = {"drainSeconds": 1, "parentShutdownSeconds": 1}


BAD_CONFIGS = [
    (API_SERVER_WOULD_REFUSE, "resources.requests.memory"),
    (CANNOT_BE_HITLESS, "parentShutdownSeconds"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_CONFIGS)
def test_a_reload_the_api_server_or_a_hitless_upgrade_would_refuse_keeps_the_previous_config(
    tmp_path: Path, bad: dict[str, Any], field: str
) -> None:
    server = start_webhook(tmp_path, config={"sidecarImage": "localhost/sidecar:1"})
    try:
        server.write_config({"sidecarImage": "localhost/sidecar:2", **bad})
        deadline = time.monotonic() + 30
        failures: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not failures:
            injected_image(server)  # a request makes the worker look at the file
            failures = [e for e in server.log_events() if e["event"] == "config-reload-failed"]
            time.sleep(0.3)
        assert failures and failures[0]["error"].startswith(f"{field}:"), failures
        assert {injected_image(server) for _ in range(8)} == {"localhost/sidecar:1"}
        with server.client() as client:
            assert 'hotupgrade_webhook_config_reloads_total{result="error"}' in client.get("/metrics").text
    finally:
        server.stop()


@pytest.mark.parametrize(("bad", "field"), BAD_CONFIGS)
def test_check_config_refuses_what_would_break_every_pod(
    tmp_path: Path, bad: dict[str, Any], field: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(bad))
    result = check_config(config)
    assert result.returncode == 2
    assert f"invalid config: {field}:" in result.stderr


def worker_pids(server: WebhookProcess) -> list[int]:
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


def test_a_worker_started_after_a_bad_reload_serves_the_last_good_config(tmp_path: Path) -> None:
    # gunicorn restarts a worker that dies (timeout, OOM); one that cannot load its config fails to boot and
    # gunicorn then stops the whole server. It must come up with the last good config instead.
    server = start_webhook(tmp_path, config={"sidecarImage": "localhost/sidecar:1"})
    try:
        server.write_config({"sidecarImage": "localhost/sidecar:2"})
        wait_for_image(server, "localhost/sidecar:2")
        server.write_config({"sidecarImage": "localhost/sidecar:3", "mode": "bogus"})
        before = worker_pids(server)
        for pid in before:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(set(worker_pids(server)) - set(before)) < len(before):
            assert server.process.poll() is None, server.logs()
            time.sleep(0.2)
        server.wait_ready()
        assert {injected_image(server) for _ in range(8)} == {"localhost/sidecar:2"}
        assert server.process.poll() is None
        kept = [e for e in server.log_events() if e["event"] == "config-reload-failed"]
        assert any(e["kept"] == "last-good" for e in kept), kept
    finally:
        server.stop()
