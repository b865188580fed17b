"""The previous agent's sidecar image (localcluster/imagebuilder/prevagent.py) is what
e2e/test_agent_skew.py takes it for: the last agent of state schema 1.0, taken from this repository's
history, still importable on today's dependencies. And only that test needs the history: a depth-1 clone
(GitHub Actions' default checkout) starts the cluster without it, fetches the one commit when the skew
test asks for it, and, when even that fails, says what to run.

Needs git, no cluster. A shallow checkout of this repository fetches the pinned commit first (as the skew
test does); only `test_pinned_commit_is_the_parent_of_schema_1_1` reads history beyond it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import settings as s
from localcluster.imagebuilder import builder, prevagent

COMMIT = prevagent.PREV_AGENT_COMMIT


def git(*args: str, repo: Path = s.REPO_ROOT) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def history() -> Path:
    """This repository, with the pinned commit present (fetched by id at depth 1 when shallow)."""
    prevagent.ensure_commit(COMMIT, s.REPO_ROOT)
    return s.REPO_ROOT


@pytest.fixture
def shallow(tmp_path: Path, history: Path) -> Path:
    """A depth-1 clone of this repository's HEAD, its origin this repository (which has the commit)."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{history}", str(clone)], check=True)
    assert git("rev-parse", "--is-shallow-repository", repo=clone) == "true"
    assert not prevagent.has_commit(clone, COMMIT)
    return clone


def test_pinned_commit_is_the_parent_of_schema_1_1(history: Path) -> None:
    if git("rev-parse", "--is-shallow-repository") == "true":
        pytest.fail(f"needs the history after {COMMIT}: run `git -C {history} fetch --unshallow`")
    # The first commit that wrote `schemaVersion` into the agent's state model; the pin is its parent.
    introduced = git("log", "--reverse", "--format=%H", "-S", "schemaVersion", "--", "agent/state.py")
    first = introduced.splitlines()[0]
    assert git("rev-parse", f"{first}^") == COMMIT


def test_commit_tree_is_the_schema_1_0_agent_and_imports_today(tmp_path: Path, history: Path) -> None:
    tree = prevagent.commit_tree(COMMIT, tmp_path / "src", history)
    assert sorted(p.name for p in tree.iterdir()) == sorted(prevagent.SOURCE_NAMES)
    state = (tree / "agent" / "state.py").read_text()
    assert "SCHEMA_VERSION = 1\n" in state and "schemaVersion" not in state
    assert "schemaVersion" in (s.REPO_ROOT / "agent" / "state.py").read_text()  # today's is 1.1
    assert (tree / "agent" / "bootstrap" / "envoy.yaml.tmpl").is_file()
    out = subprocess.run(
        [sys.executable, "-c", "import agent, agent.cli, agent.supervisor; print(agent.__file__)"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(tree / "agent" / "__init__.py")


def test_cluster_start_needs_no_history(shallow: Path) -> None:
    # In the clone, with the clone's own code: what `localcluster up` and `images` import and build.
    script = """
import sys
import localcluster.__main__, localcluster.lifecycle, localcluster.nodeimages
from localcluster.imagebuilder import builder
assert "localcluster.imagebuilder.prevagent" not in sys.modules, "cluster start imports the history reader"
print(" ".join(f"{v.tag}:{v.commit}" for v in builder.SIDECAR_VARIANTS))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=shallow, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [f"{v.tag}:None" for v in builder.SIDECAR_VARIANTS]
    assert not prevagent.has_commit(shallow, COMMIT)  # and nothing fetched it meanwhile


def test_a_shallow_clone_fetches_the_one_commit_it_needs(shallow: Path, tmp_path: Path) -> None:
    prevagent.ensure_commit(COMMIT, shallow)
    assert prevagent.has_commit(shallow, COMMIT)
    assert git("rev-parse", "--is-shallow-repository", repo=shallow) == "true"  # not the whole history
    tree = prevagent.commit_tree(COMMIT, tmp_path / "src", shallow)
    assert "schemaVersion" not in (tree / "agent" / "state.py").read_text()


def test_without_an_origin_that_has_it_the_error_says_what_to_run(shallow: Path, tmp_path: Path) -> None:
    git("remote", "set-url", "origin", f"file://{tmp_path / 'nowhere'}", repo=shallow)
    with pytest.raises(prevagent.MissingCommitError) as failed:
        prevagent.ensure_commit(COMMIT, shallow)
    message = str(failed.value)
    assert f"Run `git -C {shallow} fetch --unshallow`" in message and COMMIT in message
    assert "does not appear to be a git repository" in message  # git's own reason, passed on
    with pytest.raises(prevagent.MissingCommitError):
        prevagent.commit_tree(COMMIT, tmp_path / "src", shallow)
    assert not (tmp_path / "src").exists()
