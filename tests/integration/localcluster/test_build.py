"""Build steps that must work on an empty project cache (`make fresh-test`, the kind path's first run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from localcluster import build
from localcluster import settings as s


def test_pause_builds_into_an_empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kind path builds pause before anything else has created the cache's Kubernetes directory.
    if shutil.which("gcc") is None:
        pytest.fail("gcc is part of the cluster's host packages and must be installed")
    monkeypatch.setattr(s, "CACHE_DIR", tmp_path / "empty-cache")
    out = build.ensure_pause()
    assert out == tmp_path / "empty-cache" / f"k8s-{s.K8S_VERSION}" / "pause"
    assert out.read_bytes()[:4] == b"\x7fELF"
    assert not out.with_suffix(".tmp").exists()
    assert build.ensure_pause() == out  # cached: no second compile
