"""Image identity on a real kubelet: a target pinned by digest (`repo@sha256:...`) is upgraded to and
recognised as running whatever name the kubelet reports for it; naming afterwards the tag that image
carries is refused at once as already running (TargetAlreadyRunning), without touching the pod."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from clusterkit import images, kube, upgrade
from controller.record import Phase, Reason
from e2e import conftest, nodeimages
from e2e.test_fleet import upgrade_events
from e2e.test_upgrade import start_load, upgrade_once
from releaseapi.imageref import digest_of

pytestmark = pytest.mark.timeout(900)
ALREADY_RUNNING = "TargetAlreadyRunning"  # the Event reason (controller/steps.py)


def pinned_target(api: client.ApiClient, tag: str) -> tuple[str, str]:
    """(`repo@sha256:...`, the digest) for `tag`: from the local registry, which the kubelet pulls it from,
    or (kind, images loaded under their tags) from the node's containerd."""
    endpoints = images.local_registry()
    if endpoints is None:
        return nodeimages.pin_by_digest(api, tag)
    pinned = images.digest_reference(endpoints, tag)
    return pinned, pinned.rsplit("@", 1)[1]


def test_digest_pinned_target_upgrades_and_its_tag_is_already_running(
    api: client.ApiClient, namespace: str
) -> None:
    tag = conftest.SIDECAR_IMAGES[1]
    pinned, digest = pinned_target(api, tag)
    [pod] = conftest.deploy_and_wait(api, namespace, "pinned")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    before = upgrade.status_of(pod)
    load = start_load(pod)
    try:
        outcome, window = upgrade_once(api, namespace=namespace, name=name, image=pinned)
    finally:
        summary = load.stop()
    after = upgrade.status_of(outcome.pod)
    running = kube.container_status(outcome.pod, after.active)
    ids = {c: kube.container_status(outcome.pod, c).get("containerID") for c in after.slots}
    again = upgrade.upgrade(api, namespace, name, tag, conftest.UPGRADE_TIMEOUT)
    record = upgrade.upgrade_record(again.pod)
    warned = kube.wait_until(
        "a TargetAlreadyRunning Event",
        lambda: upgrade_events(api, namespace, name, "TargetAlreadyRunning"),
        60,
    )
    print(
        json.dumps(
            {
                "digest_pinned": {
                    "target": pinned,
                    "phase": outcome.phase,
                    "not_ready_s": window.not_ready_s,
                    "requests": summary["requests"],
                    "failed": summary["failed"],
                    "kubelet_image": running.get("image"),
                    "kubelet_image_id": running.get("imageID"),
                },
                "tag_again": {
                    "target": tag,
                    "phase": again.phase,
                    "message": again.message,
                    "events": warned,
                },
            }
        )
    )
    # Pinned by digest: upgraded, and the kubelet runs exactly that digest in the new active slot.
    assert outcome.phase == Phase.COMPLETED, outcome.message
    assert after.active == before.standby and after.sidecar_image == pinned
    assert kube.container_image(outcome.pod, after.active) == pinned
    assert digest in (digest_of(running.get("imageID")), digest_of(running.get("image"))), running
    agent = upgrade.agent_status(ip, after.slots[after.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
    assert summary["failed"] == 0, summary["failures"]
    # The tag of the image already running: refused at once, nothing restarted.
    assert again.phase == Phase.FAILED and record is not None and record.reason is Reason.ALREADY_RUNNING, (
        again
    )
    assert "already running" in again.message
    assert upgrade.status_of(again.pod) == after
    assert {c: kube.container_status(again.pod, c).get("containerID") for c in after.slots} == ids
