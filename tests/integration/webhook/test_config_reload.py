"""The config file is validated at startup and reloaded when it changes; a bad new file keeps the old one."""

import subprocess
import time
from pathlib import Path

import pytest

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


def test_check_config_prints_the_effective_config(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("sidecarImage: localhost/s:9\n")
    result = subprocess.run(
        [str(CLI), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"sidecar_image": "localhost/s:9"' in result.stdout
