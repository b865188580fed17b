"""Which image a container runs, however the kubelet spells it (cases/digest-pinned-target-pod.json).

A container runs the target when its image ID (digest) matches; the name in `status.image` is only a
fallback, and a new container (containerID, restartCount) on an image ID other than the one before the
change is the swap even when two tags share a digest.
"""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.actions import Complete, PatchStandbyImage, WaitFor
from controller.observed import ContainerView, Seen, runs_fresh, runs_image, same_image
from controller.record import Phase
from controller.steps import next_step
from releaseapi.imageref import digest_of, is_reference, normalize_image, same_name
from tests.unit.controller.podfixtures import EMPTY, SERVING_A, observe, raw_pod, set_container
from tests.unit.controller.test_steps import DRAINED, POLICY, TAKEN_OVER, apply, resetting

CASES = Path(__file__).parent / "cases"
D = "sha256:" + "3f" * 32
E = "sha256:" + "e1" * 32
REPO = "registry.local/hotupgrade-sidecar"


def case(name: str) -> dict[str, Any]:
    pod: dict[str, Any] = json.loads((CASES / name).read_text())
    return pod


def running(image: str, status_image: str | None, image_id: str | None, cid: str = "c2") -> ContainerView:
    return ContainerView(
        name="hotupgrade-b",
        spec_path="/spec/containers/1",
        image=image,
        status_image=status_image,
        image_id=image_id,
        container_id=f"containerd://{cid}",
        restart_count=1,
        running=True,
    )


def test_digest_pinned_target_reported_by_a_tag_is_taken_over() -> None:
    """The case file: before, the take-over was never recognised (TakeOverStuck after 10 minutes)."""
    pod = case("digest-pinned-target-pod.json")
    action = next_step(observe(pod, agents=TAKEN_OVER, after=5), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None
    assert action.record.phase is Phase.DRAINING and action.record.taken_over
    assert action.event is not None and action.event.reason == "TakenOver"


@pytest.mark.parametrize(
    ("status_image", "image_id"),
    [
        (f"{REPO}:2", f"{REPO}@{D}"),  # a tag in status.image, the repo digest as imageID
        (f"{REPO}:2", f"docker-pullable://{REPO}@{D}"),  # dockershim's spelling
        (f"{REPO}:2", D),  # a bare digest as imageID
        (f"{REPO}@{D}", ""),  # no imageID yet, status.image pinned
        (D, f"{REPO}@{D.upper().replace('SHA256', 'sha256')}"),  # status.image a bare ID; hex case
    ],
)
def test_a_digest_pinned_image_runs_whatever_the_kubelet_calls_it(status_image: str, image_id: str) -> None:
    assert runs_image(running(f"{REPO}@{D}", status_image, image_id), f"{REPO}@{D}")


@pytest.mark.parametrize(
    ("status_image", "image_id"),
    [(f"{REPO}:2", f"{REPO}@{E}"), (f"{REPO}@{E}", ""), (f"{REPO}:2", None)],
)
def test_another_digest_is_another_image(status_image: str, image_id: str | None) -> None:
    assert not runs_image(running(f"{REPO}@{D}", status_image, image_id), f"{REPO}@{D}")


@pytest.mark.parametrize(
    ("spec", "status_image", "expected"),
    [
        ("nginx", "docker.io/library/nginx:latest", True),
        ("nginx:1.27", "index.docker.io/library/nginx:1.27", True),
        ("registry.local:5000/x", "registry.local:5000/x:latest", True),
        (f"{REPO}:2", f"{REPO}:2@{D}", True),
        (f"{REPO}:2", f"{REPO}:1", False),
        ("nginx", "nginx@" + D, False),  # a digest says nothing about a tag
    ],
)
def test_a_tag_runs_when_the_name_matches(spec: str, status_image: str, expected: bool) -> None:
    assert runs_image(running(spec, status_image, None), spec) is expected


def test_two_tags_of_one_digest_are_still_recognised_as_a_swap() -> None:
    """The kubelet may name the running image by the other tag (kubernetes#51017): the new container on
    an image ID other than the one before the change is the swap; the same ID is a restart, not a swap."""
    before = Seen("containerd://b1", 0, f"{EMPTY}@{E}")
    other_tag = running(f"{REPO}:2", f"{REPO}:2-rc", f"{REPO}@{D}")
    assert not runs_image(other_tag, f"{REPO}:2")
    assert runs_fresh(other_tag, f"{REPO}:2", before)
    restarted_on_empty = running(f"{REPO}:2", f"{REPO}:2-rc", f"{EMPTY}@{E}")
    assert not runs_fresh(restarted_on_empty, f"{REPO}:2", before), "same image ID: still the old image"
    same_container = running(f"{REPO}:2", f"{REPO}:2", f"{REPO}@{D}", cid="b1")
    unchanged = replace(same_container, restart_count=0)
    assert not runs_fresh(unchanged, f"{REPO}:2", before), "same containerID and restartCount: not replaced"
    assert runs_fresh(same_container, f"{REPO}:2", before), "restartCount grew: a new container"


def test_take_over_with_the_kubelet_naming_another_tag_of_the_digest() -> None:
    pod = set_container(raw_pod(), "hotupgrade-b", cid="containerd://b1", image_id=f"{EMPTY}@{E}")
    start = next_step(observe(pod, agents=SERVING_A), POLICY)
    assert isinstance(start, PatchStandbyImage) and start.record.standby_image_id_before == f"{EMPTY}@{E}"
    swapped = set_container(
        apply(pod, start),
        "hotupgrade-b",
        cid="containerd://b2",
        restarts=1,
        status_image=f"{REPO}:2-rc",  # the other tag of NEW's digest
        image_id=f"{REPO}@{D}",
    )
    action = next_step(observe(swapped, agents=TAKEN_OVER, after=5), POLICY)
    assert isinstance(action, WaitFor) and action.record is not None and action.record.phase is Phase.DRAINING


def test_reset_reported_under_another_tag_of_the_empty_image_completes() -> None:
    pod = set_container(
        resetting(),
        "hotupgrade-a",
        cid="containerd://a2",
        restarts=1,
        status_image="registry.local/hotupgrade-empty:stable",  # same digest as EMPTY, other tag
        image_id=f"registry.local/hotupgrade-empty@{E}",
    )
    assert isinstance(next_step(observe(pod, agents=DRAINED, after=25), POLICY), Complete)


@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        ("nginx", True),
        ("registry.local:5000/team/sidecar:1.2.3", True),
        (f"{REPO}@{D}", True),
        (f"{REPO}:2@{D}", True),
        ("[fd00::1]:5000/x:1", True),
        ("", False),
        (" nginx", False),
        ("Nginx:1", False),  # repository names are lower case
        ("x:1:2", False),
        ("x@sha256:abc", False),  # a digest has 32 hex digits or more
        ("x:" + "t" * 129, False),
    ],
)
def test_image_references_parse_as_the_kubelet_parses_them(ref: str, ok: bool) -> None:
    assert is_reference(ref) is ok


def test_digests_and_names() -> None:
    assert digest_of(f"{REPO}@{D}") == digest_of(D) == digest_of(f"docker-pullable://{REPO}@{D}") == D
    assert digest_of(f"{REPO}:2") is None and digest_of(None) is None
    assert normalize_image("docker://nginx") == "nginx:latest"
    assert same_name("nginx", "docker.io/library/nginx") and not same_name("nginx:1", "nginx:2")
    assert same_image(f"{REPO}@{D}", f"docker.io/{REPO}@{D}") and not same_image(f"{REPO}@{D}", f"{REPO}:2")
    assert not same_image(f"{REPO}@{D}", f"{REPO}@{E}"), "same repository, other digest"
