"""Build (once, cached by version) the pinned Kubernetes commands and the pause binary."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from localcluster import settings as s

log = logging.getLogger("localcluster")


def go_binary() -> str:
    """Go from PATH, else the toolchain's usual home (CI may run with a minimal environment)."""
    return shutil.which("go") or "/usr/local/go/bin/go"


def go_env(**extra: str) -> dict[str, str]:
    """The environment for go: ours plus a HOME (its module cache lives there) if CI stripped it."""
    return {"HOME": "/root", **os.environ, "GOTOOLCHAIN": "local", **extra}


def ldflags(version: str) -> str:
    """Version stamps the official build sets, so components report the real release."""
    major, minor = version.removeprefix("v").split(".")[:2]
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(flags)


def go_build_argv(out_dir: Path, version: str, commands: tuple[str, ...]) -> list[str]:
    """One `go build` for every command: shared packages compile once. Niced, 2 jobs: a shared box."""
    return [
        "nice",
        "-n",
        "15",
        go_binary(),
        "build",
        "-p",
        "2",
        "-trimpath",
        "-ldflags",
        ldflags(version),
        "-o",
        f"{out_dir}/",
        *[f"k8s.io/kubernetes/cmd/{c}" for c in commands],
    ]


def have_binaries(bin_dir: Path, commands: tuple[str, ...]) -> bool:
    return all((bin_dir / c).is_file() for c in commands)


def ensure_kubernetes() -> Path:
    """The directory with the pinned release's binaries, building them on a cache miss."""
    if have_binaries(s.K8S_BIN_DIR, s.K8S_COMMANDS):
        return s.K8S_BIN_DIR
    tmp = s.K8S_BIN_DIR.with_name("bin.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = go_env(GOCACHE=str(s.GO_BUILD_CACHE), CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    started = time.monotonic()
    log.info("event=go-build version=%s out=%s", s.K8S_VERSION, s.K8S_BIN_DIR)
    subprocess.run(go_build_argv(tmp, s.K8S_VERSION, s.K8S_COMMANDS), check=True, cwd=s.BUILD_MODULE, env=env)
    shutil.rmtree(s.K8S_BIN_DIR, ignore_errors=True)
    tmp.rename(s.K8S_BIN_DIR)
    log.info("event=go-build-done seconds=%.0f", time.monotonic() - started)
    return s.K8S_BIN_DIR


def kubernetes_source_dir() -> Path:
    """The k8s.io/kubernetes module in the Go module cache, downloaded first if needed.

    `go mod download -json` prints the module's directory after downloading it; `go list -m` would print
    nothing on a cold module cache, which once handed gcc a relative path.
    """
    out = subprocess.run(
        [go_binary(), "mod", "download", "-json", "k8s.io/kubernetes"],
        check=True,
        text=True,
        capture_output=True,
        cwd=s.BUILD_MODULE,
        env=go_env(GOFLAGS="-mod=readonly"),
    )
    path = Path(json.loads(out.stdout)["Dir"])
    if not path.is_dir():
        raise RuntimeError(f"go mod download gave no module directory for k8s.io/kubernetes: {out.stdout!r}")
    return path


def ensure_pause() -> Path:
    """The pause binary, compiled static from the C source shipped in the k8s.io/kubernetes module."""
    out = s.CACHE_DIR / f"k8s-{s.K8S_VERSION}" / "pause"
    if out.is_file():
        return out
    src = kubernetes_source_dir() / "build" / "pause" / "linux" / "pause.c"
    tag = s.PAUSE_IMAGE.rsplit(":", 1)[1]
    tmp = out.with_suffix(".tmp")
    # The kind path asks for pause before (or without) the Kubernetes build that creates this directory.
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["gcc", "-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{tag}", "-o", str(tmp), str(src)],
        check=True,
    )
    subprocess.run(["strip", str(tmp)], check=True)
    tmp.rename(out)
    return out
