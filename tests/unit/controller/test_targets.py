"""Targets that can never be upgraded to are refused at once, and a target already running is reported.

Refused at once means: the first reconcile records Failed with the reason and owes a Warning Event,
without asking the agents, without waiting for the pod to be Ready and without touching the spec.
"""

from dataclasses import replace

import pytest

from controller.actions import Fail, Noop, PatchStandbyImage
from controller.events import due
from controller.patches import patch_for
from controller.policy import ImageAllowlist
from controller.record import Phase, Reason
from controller.steps import next_step
from tests.unit.controller.podfixtures import (
    EMPTY,
    NEW,
    OLD,
    SERVING_A,
    STATUS,
    observe,
    raw_pod,
    set_container,
)
from tests.unit.controller.test_steps import DRAINED, POLICY, annotate, apply, resetting

D = "sha256:" + "3f" * 32


@pytest.mark.parametrize(
    ("target", "reason", "words"),
    [
        (EMPTY, Reason.INVALID_TARGET, "is the empty image"),
        (f"docker.io/{EMPTY}", Reason.INVALID_TARGET, "is the empty image"),
        ("registry.local/Sidecar:2", Reason.INVALID_TARGET, "not an image reference"),
        (f"{NEW} ", Reason.INVALID_TARGET, "not an image reference"),
        ("registry.local/hotupgrade-sidecar:2:3", Reason.INVALID_TARGET, "not an image reference"),
    ],
)
def test_a_target_that_can_never_run_is_refused_at_once(target: str, reason: Reason, words: str) -> None:
    pod = raw_pod(target=target, ready=False)  # not even Ready: a refusal does not wait for the checks
    action = next_step(observe(pod, agents=None), POLICY)
    assert isinstance(action, Fail) and action.record.reason is reason and words in action.record.message
    assert action.record.phase is Phase.FAILED and action.record.finished is not None
    owed = due(action.record)
    assert owed is not None and owed.type == "Warning" and owed.reason == "UpgradeFailed"
    assert all("/spec/" not in op["path"] for op in patch_for(action, "1"))
    assert isinstance(next_step(observe(apply(pod, action), agents=None, after=3), POLICY), Noop)


def test_a_target_outside_the_allowlist_is_refused_at_once() -> None:
    policy = replace(POLICY, allowlist=ImageAllowlist(prefixes=("registry.local/approved/",)))
    action = next_step(observe(raw_pod(ready=False), agents=None), policy)
    assert isinstance(action, Fail) and action.record.reason is Reason.NOT_ALLOWED
    assert due(action.record) is not None


@pytest.mark.parametrize("target", [OLD, f"docker.io/{OLD}", f"{OLD}@{D}"])
def test_the_running_image_by_any_spelling_is_already_running(target: str) -> None:
    pod = raw_pod(target=target)
    pod = set_container(pod, "hotupgrade-a", cid="containerd://a1", image_id=f"registry.local/x@{D}")
    action = next_step(observe(pod, agents=None), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.ALREADY_RUNNING
    assert action.event.reason == "TargetAlreadyRunning" and action.event.type == "Warning"


def test_a_digest_of_the_running_image_is_already_running() -> None:
    pod = set_container(raw_pod(target=f"registry.local/x@{D}"), "hotupgrade-a", cid="a1", image_id=f"x@{D}")
    action = next_step(observe(pod, agents=None), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.ALREADY_RUNNING


def test_another_digest_of_the_running_repository_is_upgraded_to() -> None:
    target = "registry.local/hotupgrade-sidecar@sha256:" + "4a" * 32
    pod = set_container(raw_pod(target=target), "hotupgrade-a", cid="a1", image_id=f"x@{D}")
    assert isinstance(next_step(observe(pod, agents=SERVING_A), POLICY), PatchStandbyImage)


def pinned_pod(*, target: str, kubelet_says: str) -> dict[str, object]:
    """Slot a runs `x@D` (a digest-pinned upgrade completed); the kubelet names that image `kubelet_says`."""
    pinned = f"registry.local/hotupgrade-sidecar@{D}"
    pod = raw_pod(status=replace(STATUS, sidecar_image=pinned), target=target)
    image_id = f"registry.local/hotupgrade-sidecar@{D}"
    return set_container(
        pod, "hotupgrade-a", image=pinned, cid="containerd://a2", status_image=kubelet_says, image_id=image_id
    )


def test_the_tag_the_kubelet_reports_for_a_pinned_image_is_already_running() -> None:
    # containerd reports a container's image by the first tag the image carries on the node, so after an
    # upgrade to `x@D` the tag `x:2` of that same image is what runs: naming it again upgrades to nothing.
    pod = pinned_pod(target=NEW, kubelet_says=f"docker.io/{NEW}")
    action = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.ALREADY_RUNNING, action
    assert action.event.reason == "TargetAlreadyRunning" and NEW in action.record.message


def test_another_tag_than_the_kubelet_reports_for_a_pinned_image_is_upgraded_to() -> None:
    pod = pinned_pod(target=NEW, kubelet_says=OLD)
    assert isinstance(next_step(observe(pod, agents=SERVING_A), POLICY), PatchStandbyImage)


def test_a_retry_of_a_completed_upgrade_changes_nothing() -> None:
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a2", restarts=1)
    done = apply(pod, next_step(observe(pod, agents=DRAINED, after=25), POLICY))
    action = next_step(observe(annotate(done, retry="again"), agents=None, after=30), POLICY)
    assert action == Noop(f"upgrade to {NEW} already Completed"), "not turned into AlreadyRunning"


def test_a_pending_upgrade_whose_target_turns_invalid_fails() -> None:
    pod = raw_pod(ready=False)
    pending = apply(pod, next_step(observe(pod, agents=SERVING_A), POLICY))
    action = next_step(observe(annotate(pending, target=EMPTY), agents=None, after=3), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.INVALID_TARGET
