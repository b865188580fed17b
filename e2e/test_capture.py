"""Transparent inbound capture on the real cluster (issue 13): a Service that targets the app's own ports,
unchanged, reaches the app through Envoy, and a hot upgrade by annotation under load through that Service
fails no request.

The capture init container (`hotupgrade-agent capture`, from the sidecar image) installs PREROUTING
REDIRECT rules in the pod's network namespace: 8080 -> Envoy's HTTP listener, 9000 -> its TCP listener
(the demo app declares both; the suite's ports.upstream and tcpUpstream). Proved here: every response to a
request sent to the Service's port 8080 carries the header Envoy's router adds, and Envoy's own request
counter grows by at least as many requests; nothing loops (Envoy's connections to 127.0.0.1:8080 are not
redirected back to it, or no request would succeed); the rules outlive the image swaps of a hot upgrade.

The module installs a release of its own with `injection.capture.mode: iptables` (the session release
injects without capture); it sees only its own namespace.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from clusterkit.suite import answers, service_manifest, start_load_to
from controller.record import Phase
from e2e import conftest
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit
from webhook import contract

pytestmark = pytest.mark.timeout(1500)

RELEASE = release.Release(
    os.environ.get("E2E_CAPTURE_RELEASE", "hu-capture"),
    os.environ.get("E2E_CAPTURE_NAMESPACE", "hotupgrade-capture-e2e"),
)
APP_NAMESPACE = f"hu-capture-app-{uuid.uuid4().hex[:6]}"
APP = "captured"
HTTP_PORT, TCP_PORT = 8080, 9000  # the demo app's own ports, which the Service targets
# Added by Envoy's router to every response it forwards (suppress_envoy_headers is off in the bootstrap).
ENVOY_HEADER = "x-envoy-upstream-service-time"
REQUESTS = ("envoy_http_downstream_rq_total", 'envoy_http_conn_manager_prefix="http"')
PROBES = 20


@pytest.fixture(scope="module")
def capture_namespace(api: client.ApiClient, workdir: Path) -> Iterator[str]:
    """APP_NAMESPACE, opted in, seen by a release of the chart with capture on (ports: the app's declared
    TCP containerPorts, 8080 and 9000) whose controller watches it only."""
    injection = {"capture": {"mode": "iptables"}}
    labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
    with (
        conftest.module_release(
            api, workdir, RELEASE, app_namespace=APP_NAMESPACE, injection=injection
        ) as of,
        conftest.scoped_namespace(api, of, labels, name=APP_NAMESPACE) as name,
    ):
        yield name


def app_service(name: str) -> dict[str, Any]:
    """The Service a user has without a mesh: the app's own ports, nothing about Envoy."""
    service = service_manifest(name)
    service["spec"]["ports"] = [
        {"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT},
        {"name": "tcp", "port": TCP_PORT, "targetPort": TCP_PORT},
    ]
    return service


def envoy_requests(pod_ip: str, slot: str) -> float:
    """Envoy's downstream request counter of the HTTP listener, through the slot's agent (carried across
    hot restarts, agent/envoystats.py)."""
    port = contract.STATUS_PORT_A if slot == "a" else contract.STATUS_PORT_B
    with urllib.request.urlopen(f"http://{pod_ip}:{port}/stats/prometheus", timeout=5) as resp:
        text = resp.read().decode()
    name, label = REQUESTS
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"{name}{{{label}")
    ]
    assert values, f"{name} not in the stats of slot {slot}"
    return sum(values)


def through_envoy(host: str, pod_ip: str, slot: str) -> dict[str, Any]:
    """PROBES requests to host:8080; each must carry Envoy's header, and Envoy must count them all."""
    before = envoy_requests(pod_ip, slot)
    headers = []
    for _ in range(PROBES):
        with urllib.request.urlopen(f"http://{host}:{HTTP_PORT}/", timeout=5) as resp:
            assert resp.status == 200
            resp.read()
            headers.append(resp.headers.get(ENVOY_HEADER))
    after = envoy_requests(pod_ip, slot)
    assert all(h is not None for h in headers), f"a response without {ENVOY_HEADER}: it bypassed Envoy"
    assert after - before >= PROBES, (before, after)
    return {"probes": PROBES, "envoy_counted": after - before}


def capture_container_state(pod: kube.Pod) -> dict[str, Any]:
    [status] = [
        s for s in pod["status"].get("initContainerStatuses") or [] if s["name"] == contract.CAPTURE_CONTAINER
    ]
    return dict(status)


def report(tag: str, figures: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(figures, sort_keys=True)}")


def test_an_unchanged_service_reaches_the_app_through_envoy_and_an_upgrade_fails_nothing(
    api: client.ApiClient, capture_namespace: str
) -> None:
    kube.core(api).create_namespaced_service(capture_namespace, app_service(APP))
    [pod] = conftest.deploy_and_wait(api, capture_namespace, APP)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    # The capture container ran first, from the sidecar image, and installed 8080 and 9000.
    init = pod["spec"]["initContainers"][0]
    assert init["name"] == contract.CAPTURE_CONTAINER and init["image"] == conftest.SIDECAR_IMAGES[0]
    [env] = init["env"]
    assert (env["name"], env["value"]) == (
        contract.ENV_CAPTURE_REDIRECTS,
        f"{HTTP_PORT}:{contract.LISTEN_PORT},{TCP_PORT}:{contract.TCP_LISTEN_PORT}",
    )
    done = capture_container_state(pod)["state"]["terminated"]
    assert done["exitCode"] == 0, done
    service_ip = kube.core(api).read_namespaced_service(APP, capture_namespace).spec.cluster_ip
    service_answers = functools.partial(answers, service_ip, HTTP_PORT)
    kube.wait_until("the Service answers", service_answers, 60, interval=1.0)
    status = upgrade.status_of(pod)
    before_upgrade = through_envoy(service_ip, ip, status.slots[status.active])
    app_before = kube.container_status(pod, "app")

    # The suite's load mix (e2e/test_upgrade.py), to the Service's ports: the app's, not Envoy's.
    load = start_load_to(service_ip, http_port=HTTP_PORT, tcp_port=TCP_PORT)
    try:
        outcome = upgrade.upgrade(
            api, capture_namespace, name, conftest.SIDECAR_IMAGES[1], conftest.UPGRADE_TIMEOUT
        )
        assert outcome.phase == Phase.COMPLETED, outcome.message
    finally:
        summary = load.stop()
    after = upgrade.status_of(outcome.pod)
    assert after.sidecar_image == conftest.SIDECAR_IMAGES[1] and after.active == status.standby
    agent = upgrade.agent_status(ip, after.slots[after.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
    # The rules live in the pod's network namespace: the new Envoy gets the Service's traffic, and the
    # capture container did not run again.
    after_upgrade = through_envoy(service_ip, ip, after.slots[after.active])
    final = kube.get_pod(api, capture_namespace, name)
    assert capture_container_state(final)["restartCount"] == 0
    app_after = kube.container_status(final, "app")
    assert app_after["containerID"] == app_before["containerID"] and app_after["restartCount"] == 0
    report(
        "CAPTURE",
        {
            "service": f"{service_ip}:{HTTP_PORT},{TCP_PORT}",
            "before_upgrade": before_upgrade,
            "after_upgrade": after_upgrade,
            "epoch": agent["epoch"],
            "not_ready_s": outcome.not_ready_s,
            "load": {k: v for k, v in summary.items() if k not in ("by_kind", "failures")},
        },
    )
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 100 and summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=1)
