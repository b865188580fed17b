"""The previous agent's image, pure parts: which commit it is built from, that nothing `localcluster up`
builds needs the history, and what a checkout without the commit tries and then tells the user."""

from __future__ import annotations

import re
from pathlib import PurePath

from localcluster import dockerimages
from localcluster.imagebuilder import builder, prevagent

REPO = PurePath("/src/sidecar-hotupgrade")


def test_the_previous_agent_is_the_pinned_commit_on_the_first_images_envoy() -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", prevagent.PREV_AGENT_COMMIT)
    assert prevagent.PREV_AGENT_COMMIT.startswith("be521ba")  # docs/contract.md, "Agent version skew"
    variant = prevagent.PREV_VARIANT
    assert variant.commit == prevagent.PREV_AGENT_COMMIT and variant.tag == "prev"
    # Only the agent differs from the first image: the same Envoy, a bootstrap that is not broken.
    assert variant.envoy_server == builder.SIDECAR_VARIANTS[0].envoy_server and not variant.broken_bootstrap
    assert prevagent.PREV_IMAGE == "docker.io/sidecar-hotupgrade/sidecar:prev"
    assert prevagent.SOURCE_NAMES == ("pyproject.toml", "README.md", "agent", "webhook", "controller")


def test_what_cluster_start_builds_needs_no_history() -> None:
    # ensure_all (localcluster up / images) builds SIDECAR_VARIANTS; kind-build.sh builds E2E_IMAGES.
    assert [v.tag for v in builder.SIDECAR_VARIANTS if v.commit is not None] == []
    assert prevagent.PREV_VARIANT not in builder.SIDECAR_VARIANTS
    assert dockerimages.PREV_IMAGE not in dockerimages.E2E_IMAGES


def test_a_missing_commit_is_fetched_by_id_at_depth_one() -> None:
    argv = prevagent.fetch_argv(REPO, prevagent.PREV_AGENT_COMMIT)
    assert argv == [
        "git", "-C", str(REPO), "fetch", "--quiet", "--depth=1", "origin", prevagent.PREV_AGENT_COMMIT,
    ]  # fmt: skip


def test_an_unfetchable_commit_says_exactly_what_to_run() -> None:
    error = (
        "fatal: remote error: upload-pack: not our ref be521ba6b307ce5dd00921a31e16bfaa5c12d31d\n"
        "fatal: Could not read from remote repository.\n"
    )
    message = prevagent.missing_message(REPO, prevagent.PREV_AGENT_COMMIT, error)
    assert f"Run `git -C {REPO} fetch --unshallow`" in message
    assert f"`git fetch --depth=1 origin {prevagent.PREV_AGENT_COMMIT}` failed" in message
    assert "(fatal: remote error: upload-pack: not our ref be521ba" in message  # the cause
    assert "sidecar-hotupgrade/sidecar:prev" in message and "shallow clone" in message
    # A fetch that "succeeded" without bringing the commit still says why it was not enough.
    assert "(it did not bring the commit)" in prevagent.missing_message(REPO, "abc", "")


def test_the_cache_key_covers_every_input_read_before_the_history() -> None:
    key = prevagent.cache_key("sha256:d", "sha256:e", "b", b"m")
    assert key == prevagent.cache_key("sha256:d", "sha256:e", "b", b"m")
    changed = [
        prevagent.cache_key("sha256:D", "sha256:e", "b", b"m"),  # the dependency layer
        prevagent.cache_key("sha256:d", "sha256:E", "b", b"m"),  # the Envoy layer
        prevagent.cache_key("sha256:d", "sha256:e", "B", b"m"),  # builder.py / oci.py
        prevagent.cache_key("sha256:d", "sha256:e", "b", b"M"),  # prevagent.py (the pinned commit)
    ]
    assert key not in changed and len(set(changed)) == len(changed)
