"""The offline kind node image, assembled the way `kind build node-image` does (pkg/build/nodeimage
buildcontext.go `buildImage`): a container from the base image gets kubeadm/kubelet/kubectl in /usr/bin,
/kind/version and kind's default CNI and storage manifests; its containerd imports the component images
(`ctr images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests`);
`docker commit` sets kind's entrypoint. Only the sources differ: nothing is pulled from a registry.

The result is tagged `sidecar-hotupgrade/kind-node:<k8s version>-<hash of every input>` and stays in the
engine's image store (under the project cache); a warm run finds it and builds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from localcluster import build
from localcluster import settings as s
from localcluster.dockerimages import ensure_base_images, has_image, write_secrets
from localcluster.imagebuilder.builder import sha
from localcluster.kindnode import gobuild
from localcluster.kindnode import versions as v

log = logging.getLogger("localcluster.kindnode")

HERE = Path(__file__).resolve().parent
NODE_REPO = "sidecar-hotupgrade/kind-node"
# kubeadm's image repositories -> the Dockerfile target that builds each.
TARGETS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "etcd",
    "coredns",
    "pause",
)
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")


# ---- pure: reading kind's source and kubeadm's image list ---------------------------------------------


def go_string_constants(source: str) -> dict[str, str]:
    """String constants of a Go file: `const NAME = "..."` or raw strings and names joined by `+`."""
    consts: dict[str, str] = {}
    for match in re.finditer(r"^const (\w+) = ", source, re.MULTILINE):
        pos, parts = match.end(), []
        while True:
            while source[pos] in " \t\n":
                pos += 1
            if source[pos] == "`":
                end = source.index("`", pos + 1)
                parts.append(source[pos + 1 : end])
            elif source[pos] == '"':
                end = re.compile(r'"(?:[^"\\]|\\.)*"').match(source, pos).end() - 1  # type: ignore[union-attr]
                parts.append(json.loads(source[pos : end + 1]))
            else:
                name = re.compile(r"\w+").match(source, pos)
                if name is None or name.group() not in consts:
                    break
                parts.append(consts[name.group()])
                end = name.end() - 1
            pos = end + 1
            rest = re.compile(r"[ \t]*\+").match(source, pos)
            if rest is None:
                consts[match.group(1)] = "".join(parts)
                break
            pos = rest.end()
    return consts


def sandbox_image(containerd_config: str) -> str:
    """The `sandbox_image` of a containerd config (kind imports that pause image, not kubeadm's)."""
    match = re.search(r'^\s*sandbox_image\s*=\s*"([^"]+)"', containerd_config, re.MULTILINE)
    if match is None:
        raise ValueError("no sandbox_image in kind's containerd config")
    return match.group(1)


def image_targets(kubeadm_images: list[str], pause: str) -> dict[str, str]:
    """kubeadm's image list (pause replaced by containerd's) -> {Dockerfile target: image reference}.

    Raises ValueError when kubeadm asks for an etcd or CoreDNS other than the pinned one.
    """
    refs: dict[str, str] = {"pause": pause}
    for ref in kubeadm_images:
        repo, tag = ref.rsplit(":", 1)
        target = repo.rsplit("/", 1)[1]
        if target == "pause":
            continue
        if target not in TARGETS:
            raise ValueError(f"kubeadm asks for an image this build does not make: {ref}")
        if target == "etcd" and not tag.startswith(v.ETCD_VERSION.removeprefix("v") + "-"):
            raise ValueError(f"kubeadm wants etcd {tag}, the pin is {v.ETCD_VERSION}")
        if target == "coredns" and tag != v.COREDNS_VERSION:
            raise ValueError(f"kubeadm wants CoreDNS {tag}, the pin is {v.COREDNS_VERSION}")
        refs[target] = ref
    return refs


# ---- inputs ------------------------------------------------------------------------------------------


def kind_source_dir() -> Path:
    """The sigs.k8s.io/kind module in the Go module cache (downloaded if needed): we only read it."""
    out = subprocess.run(
        [build.go_binary(), "mod", "download", "-json", f"{v.KIND_MODULE}@{v.KIND_VERSION}"],
        check=True,
        text=True,
        capture_output=True,
        cwd=tempfile.gettempdir(),
        env=build.go_env(GOFLAGS=""),
    )
    return Path(json.loads(out.stdout)["Dir"])


def kind_manifests(kind_dir: Path) -> tuple[dict[str, str], list[str]]:
    """kind's default CNI and storage manifests ({path in node: text}) and the images they use."""
    pkg = kind_dir / "pkg" / "build" / "nodeimage"
    cni = go_string_constants((pkg / "const_cni.go").read_text())
    storage = go_string_constants((pkg / "const_storage.go").read_text())
    files = {
        "/kind/manifests/default-cni.yaml": cni["defaultCNIManifest"],
        "/kind/manifests/default-storage.yaml": storage["defaultStorageManifest"],
    }
    return files, [cni["kindnetdImage"], storage["storageProvisionerImage"], storage["storageHelperImage"]]


def binaries() -> dict[str, Path]:
    """Every binary the node image and its component images need, built or found in the cache."""
    k8s = build.ensure_kubernetes()
    found = {name: k8s / name for name in s.K8S_COMMANDS}
    found["kubeadm"] = gobuild.ensure_kubeadm()
    found["pause"] = build.ensure_pause()
    for name in gobuild.COMMANDS:
        found[name] = gobuild.ensure_command(name)
    return found


def _context(ctx: Path, kind_dir: Path, bins: Mapping[str, Path]) -> None:
    """The docker build context: kind's base files (kind's modes: scripts 0755, the rest 0644), bin/."""
    files = ctx / "files"
    shutil.copytree(kind_dir / "images" / "base" / "files", files, ignore=shutil.ignore_patterns("LICENSES"))
    for path in files.rglob("*"):
        executable = path.is_dir() or path.parent.name == "bin"
        path.chmod(0o755 if executable else 0o644)
    (ctx / "bin").mkdir()
    for name, src in bins.items():
        shutil.copy2(src, ctx / "bin" / name)
        (ctx / "bin" / name).chmod(0o755)
    shutil.copy2(HERE / "apt-install.sh", ctx / "apt-install.sh")
    (ctx / "apt-install.sh").chmod(0o755)
    shutil.copy2(HERE / "kindnetd.py", ctx / "kindnetd.py")
    (ctx / "kindnetd.py").chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | stat.S_IWUSR)


def node_key(bins: Mapping[str, Path], base_image: str) -> str:
    """Hash of every input of the node image: pins, our files, the base image and every binary."""
    parts: list[bytes | str] = [v.KIND_VERSION, s.K8S_VERSION, base_image]
    for f in (
        HERE / "Dockerfile",
        HERE / "apt-install.sh",
        HERE / "kindnetd.py",
        Path(__file__),
        HERE / "versions.py",
    ):
        parts += [f.name, f.read_bytes()]
    for name in sorted(bins):
        parts += [name, bins[name].read_bytes()]
    return sha(*parts)[:12]


# ---- docker --------------------------------------------------------------------------------------------


def _docker(env: Mapping[str, str], *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], env=dict(env), check=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def _build(env: Mapping[str, str], ctx: Path, target: str, tag: str, flags: list[str]) -> None:
    log.info("event=docker-build target=%s tag=%s", target, tag)
    _docker(
        {**env, "DOCKER_BUILDKIT": "1"},
        "build",
        "-f",
        str(HERE / "Dockerfile"),
        "--target",
        target,
        *flags,
        "-t",
        tag,
        str(ctx),
        stdout=subprocess.DEVNULL,
    )


def _exec(env: Mapping[str, str], cid: str, *argv: str, stdin: bytes | None = None) -> None:
    _docker(env, "exec", "-i", cid, *argv, input=stdin, stdout=subprocess.DEVNULL)


def ensure_node_image(env: Mapping[str, str]) -> str:
    """The node image for the pinned Kubernetes (built on a cache miss); returns its tag."""
    base = ensure_base_images(env).debian
    bins = binaries()
    tag = f"{NODE_REPO}:{s.K8S_VERSION}-{node_key(bins, base)}"
    if has_image(env, tag):
        return tag
    started = time.monotonic()
    kind_dir = kind_source_dir()
    manifests, extra_images = kind_manifests(kind_dir)
    listed = subprocess.run(
        [str(bins["kubeadm"]), "config", "images", "list", "--kubernetes-version", s.K8S_VERSION],
        check=True,
        text=True,
        capture_output=True,
    ).stdout.split()
    config = (kind_dir / "images" / "base" / "files" / "etc" / "containerd" / "config.toml").read_text()
    refs = image_targets(listed, sandbox_image(config))
    kindnetd_ref = extra_images[0]
    with tempfile.TemporaryDirectory(prefix="hotupgrade-kind-node-", dir=v.KIND_CACHE) as tmp:
        ctx, secrets = Path(tmp) / "context", Path(tmp) / "secrets"
        secrets.mkdir()
        _context(ctx, kind_dir, bins)
        flags = [f"--build-arg=BASE_IMAGE={base}", *write_secrets(secrets), "--network=host"]
        base_tag = f"sidecar-hotupgrade/kind-base:{tag.rsplit(':', 1)[1]}"
        _build(env, ctx, "node-base", base_tag, flags)
        archives = []
        for target, ref in [*refs.items(), ("kindnetd", kindnetd_ref)]:
            _build(env, ctx, target, ref, flags)
            archive = Path(tmp) / f"{target}.tar"
            _docker(env, "save", "-o", str(archive), ref)
            archives.append(archive)
        cid = f"kind-build-{tag.rsplit(':', 1)[1]}-{os.getpid()}"
        _docker(
            env,
            "run",
            "-d",
            "--entrypoint=sleep",
            f"--name={cid}",
            "--security-opt",
            "seccomp=unconfined",
            base_tag,
            "infinity",
            stdout=subprocess.DEVNULL,
        )
        try:
            for name in NODE_BINARIES:
                _docker(env, "cp", str(bins[name]), f"{cid}:/usr/bin/{name}")
                _exec(env, cid, "chmod", "+x", f"/usr/bin/{name}")
                _exec(env, cid, "chown", "root:root", f"/usr/bin/{name}")
            files = {"/kind/version": s.K8S_VERSION, **manifests}
            for path, text in files.items():
                _exec(env, cid, "mkdir", "-p", str(Path(path).parent))
                _exec(env, cid, "cp", "/dev/stdin", path, stdin=text.encode())
            _exec(env, cid, "bash", "-c", "nohup containerd > /dev/null 2>&1 &")
            _exec(
                env,
                cid,
                "bash",
                "-c",
                "for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done;"
                # containerd 1.6's ctr has no `info` (kind's check): `version` asks the server too.
                " ctr version",
            )
            for archive in archives:
                _exec(
                    env,
                    cid,
                    "ctr",
                    "--namespace=k8s.io",
                    "images",
                    "import",
                    "--label=io.cri-containerd.pinned=pinned",
                    "--all-platforms",
                    "--no-unpack",
                    "--digests",
                    "-",
                    stdin=archive.read_bytes(),
                )
            _exec(env, cid, "pkill", "containerd")
            _docker(
                env,
                "commit",
                "--change",
                'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]',
                "--change",
                'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""',
                cid,
                tag,
                stdout=subprocess.DEVNULL,
            )
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", cid], env=dict(env), capture_output=True, check=False)
    log.info("event=kind-node-built tag=%s seconds=%.0f", tag, time.monotonic() - started)
    return tag
