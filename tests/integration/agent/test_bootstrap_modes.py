"""The `custom` bootstrap mode on a real pod: the user's template serves and is handed over; a missing one
fails the slot with the reason before any Envoy starts. (`xds` mode: tests/integration/xds.)"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from podharness.pod import Pod
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_serving, start_load
from tests.integration.agent.conftest import DRAIN_SECONDS, PARENT_SHUTDOWN_SECONDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HEADER = "x-bootstrap"


def custom_template(directory: Path) -> Path:
    """The packaged template plus a response header, so a response shows which bootstrap served it."""
    text = DEFAULT_TEMPLATE.read_text()
    domains = '              domains: ["*"]\n'
    header = "              response_headers_to_add: [{header: {key: x-bootstrap, value: custom}}]\n"
    marked = text.replace(domains, domains + header)
    assert marked != text
    path = directory / "custom-envoy.yaml.tmpl"
    path.write_text(marked)
    return path


def custom_pod(pod: Pod, template: Path) -> SidecarPod:
    env = {contract.ENV_BOOTSTRAP_MODE: "custom", contract.ENV_BOOTSTRAP_TEMPLATE: str(template)}
    return SidecarPod(
        pod, drain_seconds=DRAIN_SECONDS, parent_shutdown_seconds=PARENT_SHUTDOWN_SECONDS, extra_env=env
    )


def bootstrap_header(sidecars: SidecarPod) -> str | None:
    response = requests.get(f"http://{sidecars.pod.ip}:{contract.LISTEN_PORT}/", timeout=5)
    assert response.status_code == 200
    return response.headers.get(HEADER)


def test_the_users_template_serves_and_is_handed_over(pod: Pod, tmp_path: Path) -> None:
    sidecars = custom_pod(pod, custom_template(tmp_path))
    sidecars.start_pod()
    assert_serving(sidecars, "a", 0)
    assert bootstrap_header(sidecars) == "custom"
    load = start_load(sidecars)
    try:
        time.sleep(0.5)
        sidecars.upgrade("b")
        assert_serving(sidecars, "b", 1)
    finally:
        summary = load.stop()
    assert summary["failed"] == 0, summary["failures"]
    assert bootstrap_header(sidecars) == "custom"
    assert sidecars.status("b")["listeners"]["same"]


def test_a_missing_custom_template_fails_the_slot_before_envoy_starts(pod: Pod, tmp_path: Path) -> None:
    sidecars = custom_pod(pod, tmp_path / "absent.yaml.tmpl")
    sidecars.start_app()
    sidecars.start_sidecar("a")
    rc, out = sidecars.post_start("a")
    assert rc == 1, out
    status = sidecars.status("a")
    assert status["phase"] == "failed"
    assert "cannot read the custom bootstrap template" in status["last_error"], status["last_error"]
    assert sidecars.envoy_pids("a") == []
