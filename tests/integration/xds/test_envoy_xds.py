"""A real Envoy configured only by the xDS test server: listeners, routes, clusters and endpoints arrive by
ADS, changes take effect, a NACK is reported, and an outage of the server leaves Envoy serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from agent import contract
from podharness.pod import Pod
from podharness.sidecar import UPSTREAM_PORT
from podharness.xds import ControlPlane
from podharness.xdsconfig import ROUTE, Route, Snapshot, http_service, route_configuration
from tests.integration.xds.conftest import NODE, SECOND_UPSTREAM_PORT, start_envoy, start_upstream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HEADER = "x-xds-version"


def service(version: str, *, routes: list[Route] | None = None, port: int = UPSTREAM_PORT) -> Snapshot:
    """The listener on the contract's port, routing to cluster app at 127.0.0.1:port; by default one
    route "/" that stamps the version into a response header."""
    return http_service(
        version,
        port=contract.LISTEN_PORT,
        cluster="app",
        endpoints=[("127.0.0.1", port)],
        routes=routes if routes is not None else [Route("/", "app", {HEADER: version})],
    )


def get(pod: Pod, path: str = "/") -> requests.Response:
    """One request through Envoy's xDS listener from outside the pod (a new connection each time)."""
    return requests.get(f"http://{pod.ip}:{contract.LISTEN_PORT}{path}", timeout=5)


def wait_serving(pod: Pod, version: str, timeout: float = 30.0) -> None:
    """Until the listener answers 200 with the version's header (it warms after its RDS arrives)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = get(pod)
            if response.status_code == 200 and response.headers.get(HEADER) == version:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Envoy does not serve version {version} after {timeout} s")
        time.sleep(0.1)


def serve_v1(pod: Pod, server: ControlPlane) -> None:
    server.push(NODE, service("1"))
    start_envoy(pod, (server.ads_host, server.ads_port))
    server.wait_acked(NODE, "1")
    wait_serving(pod, "1")


def test_listener_and_route_come_by_ads_and_a_route_change_takes_effect(
    pod: Pod, pod_control_plane: ControlPlane
) -> None:
    serve_v1(pod, pod_control_plane)
    response = get(pod, "/new")
    assert (response.status_code, response.text, response.headers[HEADER]) == (200, "ok\n", "1")
    (stream,) = pod_control_plane.status()["streams"]
    assert stream["node"] == NODE
    assert stream["peer"].startswith(f"{pod.ip}:"), "Envoy reached the server from inside the pod"
    listeners = pod.http_json(contract.ADMIN_PORT, "/listeners?format=json")
    assert [ls["name"] for ls in listeners["listener_statuses"]] == ["http"]  # type: ignore[index]

    # Add a route in front of "/": both answer, each with its own header.
    pod_control_plane.push(
        NODE, service("2", routes=[Route("/new", "app", {HEADER: "2-new"}), Route("/", "app", {HEADER: "2"})])
    )
    pod_control_plane.wait_acked(NODE, "2")
    assert get(pod, "/new").headers[HEADER] == "2-new"
    assert get(pod, "/").headers[HEADER] == "2"

    # Remove "/": only /new is routed now.
    pod_control_plane.push(NODE, service("3", routes=[Route("/new", "app", {HEADER: "3-new"})]))
    pod_control_plane.wait_acked(NODE, "3")
    assert get(pod, "/").status_code == 404
    assert get(pod, "/new").headers[HEADER] == "3-new"


def test_an_endpoint_change_moves_traffic(pod: Pod, pod_control_plane: ControlPlane) -> None:
    serve_v1(pod, pod_control_plane)
    start_upstream(pod, "app2", SECOND_UPSTREAM_PORT)
    pod_control_plane.push(NODE, service("2", port=SECOND_UPSTREAM_PORT))
    pod_control_plane.wait_acked(NODE, "2")
    assert pod.container("app").stop(grace=10) == 0
    assert [get(pod).status_code for _ in range(20)] == [200] * 20, "served by the new endpoint"

    # Back to the endpoint that is gone: the cluster follows EDS, so requests fail now.
    pod_control_plane.push(NODE, service("3"))
    pod_control_plane.wait_acked(NODE, "3")
    assert get(pod).status_code == 503


def duplicate_domains(version: str) -> Snapshot:
    """A snapshot Envoy rejects but the server's checks pass: two virtual hosts claim domain "*"."""
    good = service(version)
    routes = route_configuration("http", [Route("/", "app")])
    routes["virtual_hosts"].append({**routes["virtual_hosts"][0], "name": "again"})
    return Snapshot(version, tuple(routes if r["@type"] == ROUTE else r for r in good.resources))


def test_a_nack_is_reported_once_and_envoy_keeps_its_last_good_config(
    pod: Pod, pod_control_plane: ControlPlane
) -> None:
    serve_v1(pod, pod_control_plane)
    pod_control_plane.push(NODE, duplicate_domains("2"))
    nack = pod_control_plane.wait_nacked(NODE, "2")
    assert nack["type"] == ROUTE
    assert "Only a single wildcard domain is permitted" in nack["error"], nack
    assert get(pod).headers[HEADER] == "1", "the rejected routes never applied"

    time.sleep(2)  # go-control-plane alone would resend the rejected version in a loop (#962)
    status = pod_control_plane.status()
    assert status["nodes"][NODE]["nacks"] == 1, status["nodes"]
    (stream,) = status["streams"]
    assert (stream["types"][ROUTE]["acked"], stream["types"][ROUTE]["version"]) == ("1", "1")

    pod_control_plane.push(NODE, service("3"))
    pod_control_plane.wait_acked(NODE, "3")
    assert get(pod).headers[HEADER] == "3"


def connected_state(pod: Pod) -> int:
    """Envoy's control_plane.connected_state gauge: 1 while its ADS stream is up."""
    stats = pod.http_json(contract.ADMIN_PORT, "/stats?format=json&filter=^control_plane.connected_state$")
    (stat,) = stats["stats"]  # type: ignore[index]
    return int(stat["value"])


def test_envoy_serves_through_an_outage_and_takes_pushes_after_a_restart(
    pod: Pod, pod_control_plane: ControlPlane
) -> None:
    serve_v1(pod, pod_control_plane)
    assert pod_control_plane.stop() == 0
    assert "event=stop signal=terminated" in pod_control_plane.logs()
    deadline = time.monotonic() + 3
    seen = []
    while time.monotonic() < deadline:
        response = get(pod)
        seen.append((response.status_code, response.headers.get(HEADER)))
        time.sleep(0.05)
    assert set(seen) == {(200, "1")}, "Envoy serves its last config while the control plane is down"
    assert connected_state(pod) == 0

    # Back with its snapshots (a control plane with a store): Envoy reconnects and ACKs them again.
    pod_control_plane.start(keep_snapshots=True)
    pod_control_plane.wait_acked(NODE, "1")
    assert connected_state(pod) == 1
    pod_control_plane.push(NODE, service("2"))
    pod_control_plane.wait_acked(NODE, "2")
    assert get(pod).headers[HEADER] == "2"

    # Back empty: Envoy keeps version 2 until the next push.
    pod_control_plane.restart(keep_snapshots=False)
    status = pod_control_plane.wait_streams(NODE, 1)
    assert status["snapshots"] == {}
    assert get(pod).headers[HEADER] == "2"
    pod_control_plane.push(NODE, service("3"))
    pod_control_plane.wait_acked(NODE, "3")
    assert get(pod).headers[HEADER] == "3"


def test_ads_over_a_unix_socket_with_the_default_snapshot(pod: Pod, tmp_path: Path, xds_binary: Path) -> None:
    """A node with no snapshot of its own gets node "*"'s, until it gets its own."""
    with ControlPlane(tmp_path / "xds", unix_socket=tmp_path / "ads.sock", binary=xds_binary) as server:
        try:
            server.push("*", service("1"))
            start_envoy(pod, str(tmp_path / "ads.sock"), node="pod-7f9c")
            status = server.wait_acked("pod-7f9c", "1")
            assert status["snapshots"]["pod-7f9c"]["default"] is True
            wait_serving(pod, "1")
            server.push("pod-7f9c", service("2"))
            status = server.wait_acked("pod-7f9c", "2")
            assert status["snapshots"]["pod-7f9c"]["default"] is False
            assert get(pod).headers[HEADER] == "2"
        finally:
            print(f"----- xds-server -----\n{server.logs()[-20000:]}")
