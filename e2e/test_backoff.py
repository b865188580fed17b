"""Upgrades back and forth, back to back, on one pod under load: the kubelet's crash-loop back-off is keyed by
container and image (kuberuntime GetBackoffKey, doBackOff), so from the 4th upgrade on a slot starts an image
it already started, seconds after its last restart. The controller waits out the back-off before the image
change (controller/kubeletbackoff.py) instead of restarting into it: every upgrade completes, no request
fails, the pod is never NotReady, and the kubelet never holds a start (no BackOff Event). Figures: one JSON
object with the wait the controller took per upgrade (from its WaitingForKubeletBackOff Events)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, upgrade
from controller.keys import ANNOTATION_KUBELET_BACKOFF
from controller.record import Phase
from e2e import conftest
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load, upgrade_once

pytestmark = pytest.mark.timeout(1500)

WAITED = re.compile(r"^waiting ([0-9.]+) s for the kubelet's crash-loop back-off on (\S+) ")


def pod_events(api: client.ApiClient, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """The Events about pod `name`, by Event name."""
    resp = kube.core(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}", _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return {e["metadata"]["name"]: e for e in items}


def test_four_upgrades_back_and_forth_wait_out_the_kubelets_back_off(
    api: client.ApiClient, namespace: str
) -> None:
    [pod] = conftest.deploy_and_wait(api, namespace, "backoff")
    name = pod["metadata"]["name"]
    a, b = conftest.SIDECAR_IMAGES[0], conftest.SIDECAR_IMAGES[1]
    load = start_load(pod)
    report: list[dict[str, Any]] = []
    try:
        for target in (b, a, b, a):
            seen = pod_events(api, namespace, name)
            outcome, window = upgrade_once(api, namespace=namespace, name=name, image=target)
            new = [e for k, e in pod_events(api, namespace, name).items() if k not in seen]
            waits = [WAITED.match(e["message"]) for e in new if e["reason"] == "WaitingForKubeletBackOff"]
            report.append(
                {
                    "target": target,
                    "phase": str(outcome.phase),
                    "message": outcome.message,
                    "not_ready_s": window.not_ready_s,
                    "waits": [{"container": m[2], "seconds": float(m[1])} for m in waits if m is not None],
                    "unparsed_waits": [e["message"] for e in new if e["reason"] == "WaitingForKubeletBackOff"]
                    if None in waits
                    else [],
                    "kubelet_back_offs": [e["message"] for e in new if e["reason"] == "BackOff"],
                    "requests_so_far": load.summary()["requests"],
                }
            )
            if outcome.phase is not Phase.COMPLETED:
                break  # the rest would only pile up on a pod already off the path
    finally:
        summary = load.stop()
    final = kube.get_pod(api, namespace, name)
    memory = (final["metadata"].get("annotations") or {}).get(ANNOTATION_KUBELET_BACKOFF)
    totals = {
        "requests": summary["requests"],
        "failed": summary["failed"],
        "tcp_echoes": summary["tcp_echoes"],
        "tcp_failed": summary["tcp_failed"],
        "p99_ms": summary["p99_ms"],
    }
    print(json.dumps({"upgrades": report, "load": totals, "kubelet_backoff_annotation": memory}))
    for row in report:
        assert row["phase"] == Phase.COMPLETED, row
        assert row["kubelet_back_offs"] == [], row
        assert row["not_ready_s"] == 0.0, row
        assert row["unparsed_waits"] == [], row
    assert len(report) == 4
    # Slot a started the first image in the 2nd upgrade and was reset seconds before the 4th: the kubelet's
    # 10 s back-off for (hotupgrade-a, image) was still running, so the 4th upgrade waited for it.
    assert [w["container"] for w in report[3]["waits"]] == ["hotupgrade-a"], report[3]
    assert 0 < report[3]["waits"][0]["seconds"] <= 12.0, report[3]
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 100
    assert summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=4)
    status = upgrade.status_of(final)
    assert status.sidecar_image == a
