"""The e2e suite's image names with and without the local registry, and its reading of kubelet pulls."""

from __future__ import annotations

import json

import pytest

from clusterkit import images
from e2e import pulls
from localcluster import registry

ENDPOINTS = registry.Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p", ca_file="/ca.crt"
)


def test_with_the_registry_every_image_is_pulled_from_it_and_the_target_is_private() -> None:
    suite = images.suite_images(ENDPOINTS)
    assert suite.demo == "10.1.2.3:5000/sidecar-hotupgrade/demo-app:0.1.0"
    assert suite.sidecars == (
        "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.0",
        "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1",
    )
    assert suite.broken == "10.1.2.3:5000/sidecar-hotupgrade/sidecar:broken"
    assert suite.empty == "10.1.2.3:5000/sidecar-hotupgrade/empty:0.1.0"
    # The controller allows targets from both instances, and nothing else.
    for image in (*suite.sidecars, suite.broken):
        assert any(image.startswith(p) for p in suite.allow_prefixes), image
    assert not any("sidecar-hotupgrade/sidecar:0.1.1".startswith(p) for p in suite.allow_prefixes)
    assert suite.pull_secret is not None
    assert list(json.loads(suite.pull_secret)["auths"]) == ["10.1.2.3:5001"]


def test_without_a_registry_the_plain_names_of_loaded_images() -> None:
    suite = images.suite_images(None)
    assert suite.sidecars == ("sidecar-hotupgrade/sidecar:0.1.0", "sidecar-hotupgrade/sidecar:0.1.1")
    assert suite.allow_prefixes == ("sidecar-hotupgrade/",)
    assert suite.pull_secret is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0.0), ("812ms", 0.812), ("1.234s", 1.234), ("1m2.5s", 62.5), ("1h0m0s", 3600.0), ("3µs", 3e-6)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert pulls.go_duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1.2", "s", "1.2sec", "1s junk"])
def test_not_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a Go duration"):
        pulls.go_duration_seconds(text)


def event(reason: str, message: str, pod: str = "p") -> dict[str, object]:
    return {"reason": reason, "message": message, "involvedObject": {"kind": "Pod", "name": pod}}


IMAGE = "10.1.2.3:5001/sidecar-hotupgrade/sidecar:0.1.1"


def test_pulled_events_of_the_kubelet() -> None:
    pulled = event(
        "Pulled",
        f'Successfully pulled image "{IMAGE}" in 2.345s (3.1s including waiting). Image size: 123456 bytes.',
        "hotupgrade-prepull-ab",
    )
    present = event("Pulled", f'Container image "{IMAGE}" already present on machine', "demo")
    accessible = event(
        "Pulled", f'Container image "{IMAGE}" already present on machine and can be accessed by the pod'
    )
    other = event("Pulled", 'Container image "x:1" already present on machine')
    assert pulls.pulls_of(
        [pulled, event("Pulling", f'Pulling image "{IMAGE}"'), present, accessible, other], IMAGE
    ) == [
        pulls.Pull("hotupgrade-prepull-ab", IMAGE, 2.345, 123456),
        pulls.Pull("demo", IMAGE, None, None),
        pulls.Pull("p", IMAGE, None, None),
    ]
    assert pulls.parse_pull(event("Failed", f'Failed to pull image "{IMAGE}": 401')) is None


def test_forgetting_an_image_removes_every_record_of_its_manifest() -> None:
    present = {
        IMAGE: "sha256:aa",
        "10.1.2.3:5001/sidecar-hotupgrade/sidecar@sha256:aa": "sha256:aa",
        "sha256:cfg": "sha256:aa",  # CRI's image-ID record
        "10.1.2.3:5000/sidecar-hotupgrade/sidecar:0.1.0": "sha256:bb",
    }
    assert pulls.refs_to_forget(present, IMAGE) == sorted(
        [IMAGE, "10.1.2.3:5001/sidecar-hotupgrade/sidecar@sha256:aa", "sha256:cfg"]
    )
    assert pulls.refs_to_forget(present, "10.1.2.3:5000/other:1") == []


def test_combined_events_and_repeated_events_count() -> None:
    combined = event(
        "Pulled",
        "(combined from similar events): "
        f'Successfully pulled image "{IMAGE}" in 1.5s (1.5s including waiting). Image size: 7 bytes.',
    )
    assert pulls.parse_pull(combined) == pulls.Pull("p", IMAGE, 1.5, 7)
    first = {"metadata": {"uid": "a"}, "count": 1}
    other = {"metadata": {"uid": "b"}}
    before = pulls.event_versions([first, other])
    assert before == {"a": 1, "b": 1}
    repeated = {"metadata": {"uid": "a"}, "count": 2}
    new = {"metadata": {"uid": "c"}, "count": 1}
    assert pulls.new_since([repeated, other, new], before) == [repeated, new]
