"""Transparent inbound capture in the pod harness (no cluster): `hotupgrade-agent capture` run in the pod's
network namespace sends connections to the app's ports (which the app binds on 127.0.0.1 only) to Envoy,
Envoy's own connections to the app are not sent back to it, and upgrades under load through the app's
ports fail nothing: the rules are the namespace's, not a container's."""

from __future__ import annotations

import http.client
import subprocess

import pytest

from agent import contract
from podharness.sidecar import TCP_UPSTREAM_PORT, UPSTREAM_PORT, SidecarPod
from tests.integration.agent.checks import (
    TCP_CONNECTIONS,
    assert_tcp_closed_only_at_parent_shutdown,
    start_load,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# Envoy's router adds it to every response it forwards.
ENVOY_HEADER = "x-envoy-upstream-service-time"


def get(host: str, port: int) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("GET", "/")
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def capture(sidecars: SidecarPod) -> subprocess.CompletedProcess[str]:
    """The capture init container: the sidecar image's agent, in the pod's network namespace."""
    env = {
        contract.ENV_CAPTURE_REDIRECTS: (
            f"{UPSTREAM_PORT}:{contract.LISTEN_PORT},{TCP_UPSTREAM_PORT}:{contract.TCP_LISTEN_PORT}"
        ),
        "PATH": sidecars.default_image.path(),
    }
    return sidecars.container("a").exec([contract.AGENT_BINARY, "capture"], env, timeout=30)


def test_captured_app_ports_reach_envoy_without_a_loop_and_upgrades_fail_nothing(
    sidecar_pod: SidecarPod,
) -> None:
    ip = sidecar_pod.pod.ip
    # Before: the app listens on 127.0.0.1 only, so its port is closed on the pod IP.
    with pytest.raises(ConnectionRefusedError):
        get(ip, UPSTREAM_PORT)
    done = capture(sidecar_pod)
    assert done.returncode == 0, done.stderr
    for _ in range(5):
        response = get(ip, UPSTREAM_PORT)
        # Through Envoy, which reached the app on 127.0.0.1: a loop would never answer 200.
        assert response.status == 200 and response.getheader(ENVOY_HEADER) is not None
    # A second run (an init container run again in the same namespace) changes nothing.
    assert capture(sidecar_pod).returncode == 0

    load = start_load(
        sidecar_pod, tcp_connections=TCP_CONNECTIONS, http_port=UPSTREAM_PORT, tcp_port=TCP_UPSTREAM_PORT
    )
    try:
        for slot in ("b", "a"):
            sidecar_pod.upgrade(slot)
    finally:
        summary = load.stop()
        print(summary, sidecar_pod.timings)
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 500 and summary["tcp_echoes"] > 0
    assert summary["http2_goaway"] >= 2, "HTTP/2 clients got a GOAWAY at each upgrade: Envoy served them"
    assert_tcp_closed_only_at_parent_shutdown(load.record, sidecar_pod.timings)
    assert get(ip, UPSTREAM_PORT).getheader(ENVOY_HEADER) is not None
