"""Go binaries of the kind path, from the Go module proxy, built once per version (niced, 2 jobs).

kind itself (`go install sigs.k8s.io/kind@VERSION`), kubeadm (the local cluster's build module), and etcd,
CoreDNS and crictl from the small build modules under gobuild/ (each requires one pinned release: their
own go.mod files carry replace directives, which `go install pkg@version` refuses).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from localcluster import build
from localcluster import settings as s
from localcluster.kindnode import versions as v

log = logging.getLogger("localcluster.kindnode")


@dataclass(frozen=True)
class GoCommand:
    """One binary: its name, package, build module (under gobuild/) and pinned version."""

    name: str
    package: str
    module: str
    version: str
    ldflags: str = "-s -w"


COMMANDS = {
    "etcd": GoCommand("etcd", "go.etcd.io/etcd/server/v3", "etcd", v.ETCD_VERSION),
    "coredns": GoCommand("coredns", "github.com/coredns/coredns", "coredns", v.COREDNS_VERSION),
    "crictl": GoCommand(
        "crictl",
        "sigs.k8s.io/cri-tools/cmd/crictl",
        "crictl",
        v.CRICTL_VERSION,
        f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={v.CRICTL_VERSION}",
    ),
}


def _nice_go(*args: str) -> list[str]:
    return ["nice", "-n", "15", build.go_binary(), *args]


def _build(out: Path, argv: list[str], cwd: Path | None, **env: str) -> Path:
    """Run one go command that writes out (via a temporary name); cached: an existing out is kept."""
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("event=go-build out=%s", out)
    subprocess.run(
        argv,
        check=True,
        cwd=cwd,
        env=build.go_env(GOCACHE=str(s.GO_BUILD_CACHE), CGO_ENABLED="0", **env),
    )
    log.info("event=go-build-done out=%s seconds=%.0f", out, time.monotonic() - started)
    return out


def ensure_kind() -> Path:
    """The pinned kind binary (`go install sigs.k8s.io/kind@VERSION`; kind's go.mod has no replaces)."""
    out = v.kind_binary()
    if out.is_file():
        return out
    tmp = out.parent / "gobin.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _build(
        tmp / "kind",
        _nice_go("install", "-p", "2", "-trimpath", "-ldflags=-s -w", f"{v.KIND_MODULE}@{v.KIND_VERSION}"),
        None,
        GOBIN=str(tmp),
        GOFLAGS="",
    )
    (tmp / "kind").rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_kubeadm() -> Path:
    """kubeadm of the pinned Kubernetes release, from the local cluster's build module (kind runs it)."""
    out_dir = v.KIND_CACHE / f"kubeadm-{s.K8S_VERSION}"
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if (out_dir / "kubeadm").is_file():
        return out_dir / "kubeadm"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _build(
        tmp / "kubeadm",
        build.go_build_argv(tmp, s.K8S_VERSION, ("kubeadm",)),
        s.BUILD_MODULE,
        GOFLAGS="-mod=readonly",
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir / "kubeadm"


def ensure_command(name: str) -> Path:
    """etcd, coredns or crictl at its pinned version (static, CGO off)."""
    cmd = COMMANDS[name]
    out = v.KIND_CACHE / f"{cmd.name}-{cmd.version}" / cmd.name
    tmp = out.with_name(out.name + ".tmp")
    if not out.is_file():
        tmp.unlink(missing_ok=True)
        _build(
            tmp,
            _nice_go("build", "-p", "2", "-trimpath", f"-ldflags={cmd.ldflags}", "-o", str(tmp), cmd.package),
            v.GO_MODULES / cmd.module,
            GOFLAGS="-mod=readonly",
        )
        tmp.rename(out)
    return out
