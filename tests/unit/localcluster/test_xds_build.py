"""The xDS test server's cache key: any change to what `go build` reads rebuilds, nothing else does."""

from __future__ import annotations

import shutil
from pathlib import Path

from localcluster import settings
from localcluster.xds import BINARY, MODULE_DIR, binary_path, go_build_argv, module_files, module_hash


def copy_module(tmp_path: Path) -> Path:
    module = tmp_path / "xdsserver"
    shutil.copytree(MODULE_DIR, module)
    return module


def test_the_module_is_go_mod_go_sum_and_sources() -> None:
    names = [p.name for p in module_files(MODULE_DIR)]
    assert {"go.mod", "go.sum", "main.go"} <= set(names)
    assert all(n in {"go.mod", "go.sum"} or n.endswith(".go") for n in names)
    assert "github.com/envoyproxy/go-control-plane v0.14.0" in (MODULE_DIR / "go.mod").read_text()


def test_the_key_follows_sources_and_pins_but_not_other_files(tmp_path: Path) -> None:
    module = copy_module(tmp_path)
    key = module_hash(module)
    assert key == module_hash(MODULE_DIR) and len(key) == 16

    (module / "NOTES.txt").write_text("not read by go build")
    assert module_hash(module) == key

    (module / "extra.go").write_text("package main\n")
    with_file = module_hash(module)
    assert with_file != key
    (module / "extra.go").unlink()

    (module / "go.sum").write_text((module / "go.sum").read_text() + "\n")
    assert module_hash(module) not in {key, with_file}


def test_the_binary_lives_in_the_cache_under_its_key() -> None:
    assert binary_path("0123456789abcdef") == settings.CACHE_DIR / f"{BINARY}-0123456789abcdef" / BINARY


def test_the_build_is_niced_static_and_stripped() -> None:
    argv = go_build_argv(Path("/tmp/out/xds-server"))
    assert argv[:3] == ["nice", "-n", "15"]
    assert argv[4:7] == ["build", "-p", "2"]
    assert "-trimpath" in argv and "-s -w" in argv
    assert argv[-3:] == ["-o", "/tmp/out/xds-server", "."]
