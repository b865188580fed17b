"""Build the xDS test server once and cache it: `ensure_binary()`, or `python -m localcluster.xds`;
and its image, `ensure_image()`, for the e2e suite's in-cluster control plane (e2e/xdsplane.py).

The server (localcluster/xdsserver/, a Go module on go-control-plane) is a test fixture, not product
code: the pod-harness tests run it as a control plane and the e2e image build packs it. Built like the
Kubernetes commands (localcluster/build.py): from the Go module proxy, niced, into a temp dir renamed
into place, under settings.CACHE_DIR keyed by a hash of the module's files, so an edit rebuilds and a
fresh work tree reuses the cache. The image is that static binary alone (one layer, no base), an OCI
archive like the suite's other images (localcluster/imagebuilder), tagged with the module hash: a changed
server is a new tag, so no node keeps running an older one under the same name.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from localcluster import settings as s
from localcluster.build import go_binary, go_env
from localcluster.imagebuilder import builder, oci

log = logging.getLogger("localcluster")

MODULE_DIR = Path(__file__).resolve().parent / "xdsserver"
BINARY = "xds-server"
# Part of the cache key: a change of flags rebuilds. No VCS stamp: the binary depends on the module only.
BUILD_FLAGS = ("-trimpath", "-buildvcs=false", "-ldflags", "-s -w")
IMAGE_REPO = "docker.io/sidecar-hotupgrade/xds-server"
# Ports the image's entrypoint listens on, on every address (a pod's): ADS gRPC and the HTTP control API.
ADS_PORT = 18000
HTTP_PORT = 18001


def module_files(module: Path) -> list[Path]:
    """What the build reads from the work tree: go.mod, go.sum and the Go sources, sorted."""
    return sorted([module / "go.mod", module / "go.sum", *module.glob("*.go")])


def module_hash(module: Path) -> str:
    """16 hex digits of sha256 over the build flags and each module file's name and contents."""
    digest = hashlib.sha256(" ".join(BUILD_FLAGS).encode())
    for path in module_files(module):
        digest.update(f"\0{path.name}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def binary_path(digest: str) -> Path:
    return s.CACHE_DIR / f"{BINARY}-{digest}" / BINARY


def go_build_argv(out: Path) -> list[str]:
    """One niced `go build` with 2 jobs (a shared box), static, stripped."""
    return ["nice", "-n", "15", go_binary(), "build", "-p", "2", *BUILD_FLAGS, "-o", str(out), "."]


def ensure_binary(module: Path = MODULE_DIR) -> Path:
    """The server binary for the module as it is in the work tree, building it on a cache miss."""
    out = binary_path(module_hash(module))
    if out.is_file():
        return out
    s.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # One build at a time per machine: helpers share the cache, and the loser finds the winner's binary.
    with (s.CACHE_DIR / f"{BINARY}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        tmp = out.parent.with_name(out.parent.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        env = go_env(GOCACHE=str(s.GO_BUILD_CACHE), CGO_ENABLED="0", GOFLAGS="-mod=readonly")
        started = time.monotonic()
        log.info("event=go-build target=%s out=%s", BINARY, out)
        subprocess.run(go_build_argv(tmp / BINARY), check=True, cwd=module, env=env)
        shutil.rmtree(out.parent, ignore_errors=True)  # a directory without its binary
        tmp.rename(out.parent)
        log.info(
            "event=go-build-done target=%s seconds=%.0f bytes=%d",
            BINARY,
            time.monotonic() - started,
            out.stat().st_size,
        )
    return out


def image_name(digest: str) -> str:
    """`docker.io/sidecar-hotupgrade/xds-server:<module hash>`. Pure."""
    return f"{IMAGE_REPO}:{digest}"


def image_spec(name: str) -> oci.ImageSpec:
    """The server as an unprivileged entrypoint serving ADS and its HTTP API on every address. Pure."""
    entrypoint = [f"/{BINARY}", f"-ads-listen=0.0.0.0:{ADS_PORT}", f"-http-listen=0.0.0.0:{HTTP_PORT}"]
    user = f"{builder.NONROOT_UID}:{builder.NONROOT_UID}"
    return oci.ImageSpec(name, entrypoint, env=[], labels={"io.hotupgrade.image": "xds-server"}, user=user)


def ensure_image(module: Path = MODULE_DIR) -> Path:
    """The server's OCI image archive (and its `.ref`), built from ensure_binary() on a cache miss."""
    binary = ensure_binary(module)
    name = image_name(module_hash(module))
    out = builder._archive(name, builder.sha(binary.read_bytes(), builder.builder_hash()))
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        layer = oci.write_files_layer({BINARY: (binary.read_bytes(), 0o755)}, {}, Path(tmp) / "l.tar")
        return builder._finish(image_spec(name), [layer], out)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(ensure_binary())


if __name__ == "__main__":
    main()
