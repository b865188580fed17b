"""Build images/Dockerfile's e2e images with `docker build`, on a machine with Docker Hub or without it.

Online the Dockerfile's defaults apply (public base images, the images' own apt sources and pip's PyPI).
Offline (`make e2e-kind KIND_OFFLINE=1`) the base images are made here and the build reaches only what
this machine's apt and pip reach:
- the Debian base is the local cluster builder's debootstrap rootfs (`docker import`), busybox comes from
  Debian's busybox-static, pause from the pause binary built from the k8s.io/kubernetes module;
- the Debian archives of this machine's apt sources, its pip index settings and pip's CA bundle go in as
  build secrets (nothing of them is left in an image), and RUN steps use the host's network.
No registry host is named here: everything comes from this machine's configuration.
"""

from __future__ import annotations

import fcntl
import io
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localcluster import build as k8s_build
from localcluster import docker, host
from localcluster import settings as s
from localcluster.imagebuilder import apt_sources, builder, prevagent

log = logging.getLogger("localcluster.dockerimages")

KIND_BUILD = s.REPO_ROOT / "images" / "kind-build.sh"
DOCKERFILE = s.REPO_ROOT / "images" / "Dockerfile"
IMAGE_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What kind-build.sh makes (tag -> Dockerfile target); the suite and the chart use these names. The
# previous agent's image is not among them: only the version-skew test builds it (`build_prev_image`).
E2E_IMAGES = {
    "sidecar-hotupgrade/sidecar:0.1.0": "sidecar",
    "sidecar-hotupgrade/sidecar:0.1.1": "sidecar",
    "sidecar-hotupgrade/sidecar:broken": "sidecar",
    "sidecar-hotupgrade/empty:0.1.0": "empty",
    "sidecar-hotupgrade/demo-app:0.1.0": "demo-app",
    "sidecar-hotupgrade/webhook:0.1.0": "webhook",
}
PREV_IMAGE = "sidecar-hotupgrade/sidecar:prev"
# pip settings that say where and how pip reaches its index; paths on this machine (find-links) mean
# nothing inside a build and are left out.
PIP_KEYS = (
    "index-url",
    "extra-index-url",
    "trusted-host",
    "cert",
    "default-timeout",
    "timeout",
    "retries",
    "proxy",
)
PIP_CERT_IN_BUILD = "/run/secrets/pip-cert.pem"


# ---- pure: this machine's settings as build inputs -------------------------------------------------------


def debian_source_lines(text: str) -> list[str]:
    """One-line apt entries for the Debian archives (`.../debian`, `.../debian-security`) in apt sources.

    Third-party repositories are left out: their keys are not in a Debian image. Input: the text of
    every sources file (one-line `.list` and deb822 `.sources`).
    """
    entries: list[tuple[str, str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                for suite in fields.get("Suites", "").split():
                    entries.append((uri, suite, fields.get("Components", "main")))
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], words[2], " ".join(words[3:]) or "main"))
    lines = []
    for uri, suite, components in entries:
        if re.search(r"/debian(-security)?/?$", uri):
            line = f"deb {uri.rstrip('/')} {suite} {components}"
            if line not in lines:
                lines.append(line)
    return lines


def pip_settings(config_list: str) -> dict[str, str]:
    """`pip config list` output -> {key: value} for the keys in PIP_KEYS; environment beats files."""
    found: dict[str, tuple[int, str]] = {}
    for line in config_list.splitlines():
        match = re.match(r"^(?P<scope>[^=]*)\.(?P<key>[a-z-]+)='(?P<value>.*)'$", line.strip())
        if not match or match["key"] not in PIP_KEYS:
            continue
        rank = 1 if match["scope"].startswith(":env:") else 0
        if match["key"] not in found or rank >= found[match["key"]][0]:
            found[match["key"]] = (rank, match["value"])
    return {key: value for key, (_, value) in found.items()}


def pip_conf(settings: Mapping[str, str], cert_in_build: str | None) -> str:
    """A pip.conf for the build: the settings, with the CA bundle at its path inside the build."""
    lines = ["[global]"]
    for key, value in sorted(settings.items()):
        if key == "cert":
            continue
        lines.append(f"{key} = {value}")
    if cert_in_build:
        lines.append(f"cert = {cert_in_build}")
    return "\n".join(lines) + "\n"


# ---- base images --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BaseImages:
    """Local tags for the Dockerfile's three FROM build arguments."""

    debian: str
    busybox: str
    pause: str

    def build_args(self) -> list[str]:
        return [
            f"--build-arg=BASE_IMAGE={self.debian}",
            f"--build-arg=BUSYBOX_IMAGE={self.busybox}",
            f"--build-arg=PAUSE_IMAGE={self.pause}",
        ]


@contextmanager
def cache_lock() -> Iterator[None]:
    """The lock the local cluster's image builds hold: the cached rootfs is shared with them."""
    lock_file = s.CACHE_DIR / ".cluster.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def has_image(env: Mapping[str, str], ref: str) -> bool:
    out = subprocess.run(["docker", "image", "inspect", ref], env=dict(env), capture_output=True, check=False)
    return out.returncode == 0


def _import(env: Mapping[str, str], archive: bytes | Path, ref: str, changes: Sequence[str]) -> None:
    """`docker import` of a root filesystem tar (bytes or file) as ref."""
    argv = ["docker", "import", *(f"--change={c}" for c in changes), "-", ref]
    log.info("event=docker-import ref=%s", ref)
    if isinstance(archive, Path):
        with archive.open("rb") as f:
            subprocess.run(argv, env=dict(env), stdin=f, check=True, capture_output=True)
    else:
        subprocess.run(argv, env=dict(env), input=archive, check=True, capture_output=True)


def files_tar(files: Mapping[str, tuple[bytes, int]], links: Mapping[str, str]) -> bytes:
    """A small root filesystem as tar bytes: {path: (content, mode)} plus {path: symlink target}."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({str(Path(p).parent) for p in [*files, *links]} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
        for path, target in sorted(links.items()):
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def ensure_base_images(env: Mapping[str, str]) -> BaseImages:
    """Debian (the debootstrap rootfs), busybox and pause as local images, tagged by content; apt-installs
    what they are made from (settings.IMAGE_PACKAGES) when missing."""
    host.ensure_packages(s.IMAGE_PACKAGES)
    with cache_lock():
        _, base_layer = builder.ensure_base()
        pause = k8s_build.ensure_pause().read_bytes()
    busybox = Path("/bin/busybox").read_bytes()
    images = BaseImages(
        debian=f"sidecar-hotupgrade/debian:{builder.DEBIAN_SUITE}-{base_layer.digest.split(':')[-1][:12]}",
        busybox=f"sidecar-hotupgrade/busybox:{builder.sha(busybox)[:12]}",
        pause=f"sidecar-hotupgrade/pause:{s.PAUSE_IMAGE.rsplit(':', 1)[1]}-{builder.sha(pause)[:12]}",
    )
    if not has_image(env, images.debian):
        _import(env, base_layer.path, images.debian, [f"ENV {IMAGE_PATH_ENV}", 'CMD ["bash"]'])
    if not has_image(env, images.busybox):
        tar = files_tar({"bin/busybox": (busybox, 0o755)}, {"bin/sh": "busybox"})
        _import(env, tar, images.busybox, [f"ENV {IMAGE_PATH_ENV}", 'CMD ["sh"]'])
    if not has_image(env, images.pause):
        _import(env, files_tar({"pause": (pause, 0o755)}, {}), images.pause, ['ENTRYPOINT ["/pause"]'])
    return images


# ---- secrets and flags -----------------------------------------------------------------------------------


def write_secrets(workdir: Path) -> list[str]:
    """This machine's Debian archives, pip settings and pip CA bundle as files; their --secret flags."""
    flags = []
    lines = debian_source_lines(apt_sources.read_sources())
    if lines:
        (workdir / "apt-sources.list").write_text("\n".join(lines) + "\n")
        flags.append(f"--secret=id=apt-sources,src={workdir / 'apt-sources.list'}")
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings = pip_settings(listed)
    cert = settings.get("cert")
    if cert and Path(cert).is_file():
        (workdir / "pip-cert.pem").write_bytes(Path(cert).read_bytes())
        flags.append(f"--secret=id=pip-cert,src={workdir / 'pip-cert.pem'}")
    (workdir / "pip.conf").write_text(pip_conf(settings, PIP_CERT_IN_BUILD if cert else None))
    flags.append(f"--secret=id=pip.conf,src={workdir / 'pip.conf'}")
    return flags


HOST_NETWORK = "--network=host"


def online_flags(env: Mapping[str, str]) -> list[str]:
    """`docker build` flags with the public registries: none, but the host's network on the engine started
    here, which has no bridge (localcluster/docker.py: `--bridge=none`), so a RUN step would have none."""
    return [HOST_NETWORK] if docker.is_ours(env) else []


def offline_flags(env: Mapping[str, str], workdir: Path) -> list[str]:
    """`docker build` flags for a machine without the public registries (base images made first)."""
    return [*ensure_base_images(env).build_args(), *write_secrets(workdir), HOST_NETWORK]


def build_e2e_images(env: Mapping[str, str], *, offline: bool) -> None:
    """Run images/kind-build.sh (the documented build) with this machine's settings when offline."""
    with tempfile.TemporaryDirectory(prefix="hotupgrade-docker-build-") as tmp:
        flags = offline_flags(env, Path(tmp)) if offline else online_flags(env)
        log.info("event=kind-build offline=%s flags=%s", offline, " ".join(flags))
        subprocess.run(
            [str(KIND_BUILD)],
            cwd=s.REPO_ROOT,
            env={**env, "DOCKER_BUILD_FLAGS": " ".join(flags)},
            check=True,
        )


def build_prev_image(env: Mapping[str, str], *, offline: bool) -> str:
    """PREV_IMAGE with `docker build`: kind-build.sh's prev-only mode on the previous agent's sources
    from the history (prevagent.commit_tree: MissingCommitError when it cannot get them). Returns the tag."""
    with tempfile.TemporaryDirectory(prefix="hotupgrade-docker-build-") as tmp:
        tree = prevagent.commit_tree(prevagent.PREV_AGENT_COMMIT, Path(tmp) / "src")
        flags = offline_flags(env, Path(tmp)) if offline else online_flags(env)
        log.info("event=kind-build-prev offline=%s commit=%s", offline, prevagent.PREV_AGENT_COMMIT)
        subprocess.run(
            [str(KIND_BUILD)],
            cwd=s.REPO_ROOT,
            env={
                **env,
                "DOCKER_BUILD_FLAGS": " ".join(flags),
                "PREV_AGENT_TREE": str(tree),
                "PREV_AGENT_COMMIT": prevagent.PREV_AGENT_COMMIT,
            },
            check=True,
        )
    return PREV_IMAGE
