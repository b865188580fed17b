"""A Job's pod (restartPolicy Never) gets the pair as native sidecars (injection.runToCompletion's default,
nativeSidecar, in containers mode), its work goes through the pair's Envoy, and the Job completes: the
kubelet stops the pair once the work container has exited."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, upgrade
from e2e import conftest
from webhook import contract

pytestmark = pytest.mark.timeout(600)

# The work: serve the app's port (release.values: upstream 8080), ask for it through the pair's Envoy once
# (no retry: native sidecars hold the work container until their postStart saw Envoy LIVE), then exit.
THROUGH_THE_PAIR = f"""
import http.server, sys, threading, urllib.request
app = http.server.ThreadingHTTPServer(("127.0.0.1", 8080), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=app.serve_forever, daemon=True).start()
status = urllib.request.urlopen("http://127.0.0.1:{contract.LISTEN_PORT}/", timeout=10).status
print("through the pair:", status, flush=True)
sys.exit(0 if status == 200 else 1)
"""
JOB_TIMEOUT = 240.0


def init_state(pod: kube.Pod, name: str) -> dict[str, Any]:
    """The state of init container `name` (`{}` before the kubelet reported it)."""
    for status in pod.get("status", {}).get("initContainerStatuses", []) or []:
        if status.get("name") == name:
            return dict(status.get("state") or {})
    return {}


def test_injected_job_completes_with_the_pair_as_native_sidecars(
    api: client.ApiClient, namespace: str
) -> None:
    started = time.monotonic()
    kube.batch(api).create_namespaced_job(namespace, conftest.demo_job("report", THROUGH_THE_PAIR))
    job = conftest.wait_job_succeeded(api, namespace, "report", JOB_TIMEOUT)
    seconds = round(time.monotonic() - started, 1)
    pod = conftest.job_pod(api, namespace, "report")
    name = pod["metadata"]["name"]
    status = upgrade.status_of(pod)
    init = pod["spec"].get("initContainers") or []
    log = kube.core(api).read_namespaced_pod_log(name, namespace, container="work")
    work = kube.container_status(pod, "work")["state"]
    pair = {slot: init_state(pod, slot) for slot in status.slots}
    print(
        json.dumps(
            {
                "job": {
                    "succeeded": job["status"].get("succeeded"),
                    "seconds": seconds,
                    "phase": pod["status"].get("phase"),
                    "work_exit": work.get("terminated", {}).get("exitCode"),
                    "pair_exit": {slot: s.get("terminated", {}).get("exitCode") for slot, s in pair.items()},
                    "log": log.strip().splitlines()[-1:],
                }
            }
        )
    )
    assert job["status"]["succeeded"] == 1 and pod["status"]["phase"] == "Succeeded"
    # The decision: native sidecars (restartable init containers), never regular containers.
    assert [c["name"] for c in pod["spec"]["containers"]] == ["work"]
    assert [(c["name"], c.get("restartPolicy")) for c in init] == [(slot, "Always") for slot in status.slots]
    assert init[0]["image"] == conftest.SIDECAR_IMAGES[0] and init[1]["image"] == conftest.EMPTY_IMAGE
    # The work reached the app through the pair's Envoy, then ended the pod.
    assert work["terminated"]["exitCode"] == 0 and "through the pair: 200" in log, (work, log)
    # The kubelet stopped both sidecars once the work had exited.
    assert all("terminated" in state for state in pair.values()), pair
    # The Job controller took its tracking finalizer off (pods it counted keep none).
    assert "batch.kubernetes.io/job-tracking" not in (pod["metadata"].get("finalizers") or [])
