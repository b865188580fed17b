"""Targets against the real kube-apiserver: a digest-pinned target the kubelet names by a tag completes
(cases/digest-pinned-target-pod.json); targets that can never work are refused at the first reconcile,
and a target already running is reported, each with its record and Event on the pod."""

from typing import Any

import pytest

from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.record import Phase, Reason
from tests.integration.controller.fakes import EMPTY, OLD, KubeletSim
from tests.integration.controller.test_reconcile_apiserver import (
    annotate,
    drive,
    event_reasons,
    image_of,
    make_reconciler,
    phase_is,
    record_of,
)
from webhook.injection_status import parse_status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PINNED = "registry.local/hotupgrade-sidecar@sha256:" + "3f" * 32


def test_a_digest_pinned_target_named_by_a_tag_is_upgraded_to(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.tags[PINNED] = "registry.local/hotupgrade-sidecar:2"  # what the kubelet writes in status.image
    sim.add_pod("web-0")
    reconciler, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: PINNED})
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED, Phase.FAILED))
    record = record_of(pod)
    assert record is not None and record.phase is Phase.COMPLETED, record
    status = parse_status(pod["metadata"]["annotations"]["hotupgrade.io/status"])
    assert (status.active, status.sidecar_image) == ("hotupgrade-b", PINNED)
    assert image_of(pod, "hotupgrade-a") == EMPTY


@pytest.mark.parametrize(
    "case",
    [
        (EMPTY, Reason.INVALID_TARGET, "UpgradeFailed"),
        ("registry.local/Not An Image", Reason.INVALID_TARGET, "UpgradeFailed"),
        (OLD, Reason.ALREADY_RUNNING, "TargetAlreadyRunning"),
    ],
)
def test_a_target_that_cannot_be_upgraded_to_is_told_at_once(
    kube: Kube, namespace: str, sim: KubeletSim, case: tuple[str, Reason, str]
) -> None:
    target, reason, event = case
    sim.add_pod("web-0")
    reconciler, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: target})
    assert reconciler.reconcile(namespace, "web-0").done, "terminal after one reconcile"
    pod: Any = kube.get_pod(namespace, "web-0")
    record = record_of(pod)
    assert record is not None and record.phase is Phase.FAILED and record.reason is reason
    assert image_of(pod, "hotupgrade-b") == EMPTY and image_of(pod, "hotupgrade-a") == OLD
    assert event_reasons(kube, namespace, "web-0") == [event]
    assert reconciler.reconcile(namespace, "web-0").done
    assert event_reasons(kube, namespace, "web-0") == [event], "told once"
