"""The e2e cluster's OCI registry: distribution's `cmd/registry`, pinned, built from the Go module proxy.

Two host processes listen on the node IP with TLS from the cluster's CA: a public instance, and a private
one behind basic auth (htpasswd, bcrypt) that holds one repository. distribution's htpasswd access
controller ignores the requested repository and scope (registry/auth/htpasswd/access.go `Authorized`):
it guards every repository of an instance or none, so "one private repository" needs its own instance.
containerd trusts both through a `hosts.toml` per registry host in `hosts_dir` (CRI `config_path`).

This module never touches containerd's config, the kubelet or the pre-imported images: the lifecycle wires
`up()`/`down()` in (localcluster/lifecycle.py), containerd's config names `Layout.hosts_dir`.
"""

from __future__ import annotations

import base64
import datetime
import json
import logging
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import bcrypt
import requests
import yaml

from localcluster import build, host, pki, registryclient
from localcluster import settings as s
from localcluster.configs import Component
from webhook import certs

log = logging.getLogger("localcluster")

REGISTRY_MODULE = "github.com/distribution/distribution/v3"
REGISTRY_VERSION = "v3.1.2"
BUILD_MODULE = Path(__file__).resolve().parent / "registrybuild"
REGISTRY_BINARY = s.CACHE_DIR / f"registry-{REGISTRY_VERSION}" / "bin" / "registry"

# The one repository behind basic auth (the sidecar images, so a pod's upgrade target can be private).
PRIVATE_REPOSITORY = "sidecar-hotupgrade/sidecar"
PULL_USER = "e2e-puller"
REALM = "sidecar-hotupgrade-e2e"
# distribution checks the bcrypt hash on every request (registry/auth/htpasswd/htpasswd.go, no cache), so
# a high cost slows every pull; the password is 192 random bits, which the cost would not protect anyway.
BCRYPT_ROUNDS = 6


@dataclass(frozen=True)
class Layout:
    """Where one registry pair lives: its state directory, ports, process names and the CA that signs it."""

    state_dir: Path
    public_port: int
    private_port: int
    name: str = "registry"  # component (pid/log file) name prefix
    pki_dir: Path = s.PKI_DIR  # holds ca.crt + ca.key

    @property
    def hosts_dir(self) -> Path:
        """The containerd hosts directory (`<host:port>/hosts.toml`): CRI `config_path`, ctr `--hosts-dir`."""
        return self.state_dir / "certs.d"

    @property
    def endpoints_file(self) -> Path:
        return self.state_dir / "endpoints.json"


DEFAULT_LAYOUT = Layout(state_dir=s.REGISTRY_DIR, public_port=5000, private_port=5001)
assert DEFAULT_LAYOUT.hosts_dir == s.REGISTRY_HOSTS_DIR  # what containerd's config names (configs.py)


@dataclass(frozen=True)
class Instance:
    """One registry process: component (pid/log file) name, port, and whether it demands basic auth."""

    component: str
    port: int
    private: bool

    def address(self, endpoints: Endpoints) -> str:
        return endpoints.private if self.private else endpoints.public


@dataclass(frozen=True)
class Endpoints:
    """What clients of a running registry pair need (e2e: image references and the pull secret)."""

    public: str  # "host:port"
    private: str
    username: str
    password: str
    ca_file: str


def instances(layout: Layout) -> tuple[Instance, Instance]:
    return (
        Instance(f"{layout.name}-public", layout.public_port, private=False),
        Instance(f"{layout.name}-private", layout.private_port, private=True),
    )


# ---- pure: names, configs ---------------------------------------------------------------------------


def repository_and_tag(image: str) -> tuple[str, str]:
    """`docker.io/sidecar-hotupgrade/sidecar:0.1.0` -> (`sidecar-hotupgrade/sidecar`, `0.1.0`).

    The first path component is dropped when it names a registry host (has a dot or a port), as the
    docker reference grammar decides it (github.com/distribution/reference `splitDockerDomain`).
    """
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or "@" in image:
        raise ValueError(f"image {image!r} has no tag")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
    return name, tag


def image_ref(endpoints: Endpoints, image: str, *, private: bool = False) -> str:
    """An archive's image as this pair serves it, e.g. `10.0.0.5:5000/sidecar-hotupgrade/demo-app:0.1.0`."""
    repository, tag = repository_and_tag(image)
    if private and repository != PRIVATE_REPOSITORY:
        raise ValueError(f"only {PRIVATE_REPOSITORY} is private, not {repository}")
    return f"{endpoints.private if private else endpoints.public}/{repository}:{tag}"


def push_targets(image: str, endpoints: Endpoints) -> list[tuple[str, bool]]:
    """Where an image goes: (registry address, needs auth). Every image is public; the private
    repository's images are in the private instance too."""
    targets = [(endpoints.public, False)]
    if repository_and_tag(image)[0] == PRIVATE_REPOSITORY:
        targets.append((endpoints.private, True))
    return targets


def registry_config(*, address: str, state_dir: Path, instance: Instance, http_secret: str) -> str:
    """distribution's config.yml for one instance (docs/content/about/configuration.md of the release)."""
    doc: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {
            "filesystem": {"rootdirectory": str(state_dir / instance.component / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            # A fresh store per `up`: nothing to purge, and no background walk on a busy box.
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {
            "addr": address,
            "secret": http_secret,
            "tls": {"certificate": str(state_dir / "tls.crt"), "key": str(state_dir / "tls.key")},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
    }
    if instance.private:
        doc["auth"] = {"htpasswd": {"realm": REALM, "path": str(state_dir / "htpasswd")}}
    return yaml.safe_dump(doc, sort_keys=False)


def hosts_toml(address: str, ca_file: Path) -> str:
    """containerd's hosts.toml for one registry host: HTTPS with our CA (docs/hosts.md, containerd >= 1.5)."""
    return "\n".join(
        [
            f'server = "https://{address}"',
            "",
            f'[host."https://{address}"]',
            '  capabilities = ["pull", "resolve", "push"]',
            f'  ca = "{ca_file}"',
            "",
        ]
    )


def htpasswd_line(user: str, password: str) -> str:
    """One htpasswd entry; distribution accepts bcrypt hashes only."""
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()}\n"


def docker_config_json(endpoints: Endpoints) -> str:
    """The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret for the private instance."""
    auth = base64.b64encode(f"{endpoints.username}:{endpoints.password}".encode()).decode()
    entry = {"username": endpoints.username, "password": endpoints.password, "auth": auth}
    return json.dumps({"auths": {endpoints.private: entry}})


# ---- build ------------------------------------------------------------------------------------------


def go_build_argv(out_dir: Path) -> list[str]:
    """Build `cmd/registry` niced, one package at a time (a shared 2-core box), stamped like upstream."""
    pkg = REGISTRY_MODULE
    ldflags = f"-s -w -X {pkg}/version.version={REGISTRY_VERSION} -X {pkg}/version.mainpkg={pkg}"
    return [
        "nice",
        "-n",
        "15",
        build.go_binary(),
        "build",
        "-p",
        "1",
        "-trimpath",
        "-ldflags",
        ldflags,
        "-o",
        f"{out_dir}/",
        f"{pkg}/cmd/registry",
    ]


def ensure_registry() -> Path:
    """The pinned registry binary, built on a cache miss (into a temp dir, then renamed)."""
    if REGISTRY_BINARY.is_file():
        return REGISTRY_BINARY
    bin_dir = REGISTRY_BINARY.parent
    tmp = bin_dir.with_name("bin.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    env = build.go_env(GOCACHE=str(s.GO_BUILD_CACHE), CGO_ENABLED="0", GOFLAGS="-mod=readonly")
    started = time.monotonic()
    log.info("event=go-build module=%s version=%s out=%s", REGISTRY_MODULE, REGISTRY_VERSION, bin_dir)
    subprocess.run(go_build_argv(tmp), check=True, cwd=BUILD_MODULE, env=env)
    shutil.rmtree(bin_dir, ignore_errors=True)
    tmp.rename(bin_dir)
    log.info("event=go-build-done module=%s seconds=%.0f", REGISTRY_MODULE, time.monotonic() - started)
    return REGISTRY_BINARY


# ---- files, processes -------------------------------------------------------------------------------


def _put(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)


def write_files(layout: Layout, node_ip: str) -> Endpoints:
    """Serving certificate, htpasswd, configs, containerd hosts.toml and endpoints.json for a fresh pair."""
    ca_cert = (layout.pki_dir / "ca.crt").read_bytes()
    ca_key = (layout.pki_dir / "ca.key").read_bytes()
    spec = pki.CertSpec(
        "registry",
        "sidecar-hotupgrade-registry",
        dns_names=("localhost",),
        ip_addresses=tuple(dict.fromkeys((node_ip, "127.0.0.1"))),
        server=True,
    )
    leaf = pki.make_leaf(spec, certs.KeyPair(ca_cert, ca_key), datetime.datetime.now(datetime.UTC))
    cert, key = leaf.cert_pem, leaf.key_pem
    state = layout.state_dir
    ca_file = state / "ca.crt"
    _put(ca_file, ca_cert)
    _put(state / "tls.crt", cert)
    _put(state / "tls.key", key, 0o600)
    endpoints = Endpoints(
        public=f"{node_ip}:{layout.public_port}",
        private=f"{node_ip}:{layout.private_port}",
        username=PULL_USER,
        password=secrets.token_urlsafe(24),
        ca_file=str(ca_file),
    )
    _put(state / "htpasswd", htpasswd_line(endpoints.username, endpoints.password), 0o600)
    for instance in instances(layout):
        config = registry_config(
            address=f"{node_ip}:{instance.port}",
            state_dir=state,
            instance=instance,
            http_secret=secrets.token_hex(16),
        )
        _put(state / instance.component / "config.yml", config, 0o600)
    for address in (endpoints.public, endpoints.private):
        _put(layout.hosts_dir / address / "hosts.toml", hosts_toml(address, ca_file))
    _put(layout.endpoints_file, json.dumps(asdict(endpoints), indent=2) + "\n", 0o600)
    return endpoints


def load_endpoints(layout: Layout = DEFAULT_LAYOUT) -> Endpoints:
    """The endpoints of the pair `up()` started (raises FileNotFoundError when it is down)."""
    return Endpoints(**json.loads(layout.endpoints_file.read_text()))


def registry_component(layout: Layout, instance: Instance) -> Component:
    config = layout.state_dir / instance.component / "config.yml"
    # v3 exports OpenTelemetry traces to localhost:4318 unless told not to (configuration.md).
    return Component(
        instance.component,
        (str(REGISTRY_BINARY), "serve", str(config)),
        env=(("OTEL_TRACES_EXPORTER", "none"),),
    )


def _answers(endpoints: Endpoints, instance: Instance) -> bool:
    """It serves /v2/ over TLS with our CA: 200 to anyone when public; when private, 401 to an anonymous
    client and 200 with the endpoints' credentials."""
    address = instance.address(endpoints)
    try:
        anonymous = registryclient.Registry(address, ca_file=endpoints.ca_file).ping()
        if not instance.private:
            return anonymous == 200
        auth = (endpoints.username, endpoints.password)
        return (
            anonymous == 401
            and registryclient.Registry(address, ca_file=endpoints.ca_file, auth=auth).ping() == 200
        )
    except requests.RequestException:
        return False


def is_healthy(layout: Layout, node_ip: str) -> bool:
    """Both processes run, listen where `layout` and node_ip say, and answer as they should."""
    try:
        endpoints = load_endpoints(layout)
    except (OSError, ValueError, TypeError):
        return False
    wanted = (f"{node_ip}:{layout.public_port}", f"{node_ip}:{layout.private_port}")
    if (endpoints.public, endpoints.private) != wanted:
        return False  # the node IP moved: the certificate and the image references are stale
    return all(
        host.recorded_pid(i.component) is not None and _answers(endpoints, i) for i in instances(layout)
    )


# The processes this Python process started, reaped by `down()` (no zombie, no ResourceWarning in tests).
_children: dict[str, subprocess.Popen[bytes]] = {}


def start(layout: Layout, endpoints: Endpoints, timeout: float = 30.0) -> None:
    """Start both instances and wait until they answer."""
    for instance in instances(layout):
        _children[instance.component] = host.start(registry_component(layout, instance))
    deadline = time.monotonic() + timeout
    for instance in instances(layout):
        while not _answers(endpoints, instance):
            if host.recorded_pid(instance.component) is None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{instance.component} did not come up on port {instance.port}; "
                    f"see {s.LOG_DIR / instance.component}.log"
                )
            time.sleep(0.2)


def push(endpoints: Endpoints, archives: Iterable[Path]) -> int:
    """Push every image archive (OCI layout tar + `.ref` file) where `push_targets` says; returns how many
    manifests were written (0 when the registry already holds every image at its digest)."""
    started = time.monotonic()
    written = 0
    sessions: dict[str, registryclient.Registry] = {}
    for archive in archives:
        image = archive.with_suffix(".ref").read_text().split()[0]
        repository, tag = repository_and_tag(image)
        for address, private in push_targets(image, endpoints):
            if address not in sessions:
                auth = (endpoints.username, endpoints.password) if private else None
                sessions[address] = registryclient.Registry(address, ca_file=endpoints.ca_file, auth=auth)
            written += sessions[address].push_archive(archive, repository, tag)
    log.info("event=registry-pushed manifests=%d seconds=%.1f", written, time.monotonic() - started)
    return written


# ---- lifecycle --------------------------------------------------------------------------------------


def up(node_ip: str, archives: Iterable[Path], layout: Layout = DEFAULT_LAYOUT) -> Endpoints:
    """Build (cached), certify, start and fill the registry pair; a healthy pair is only refilled
    (pushes skip what it holds). Idempotent. Returns the endpoints (also in `layout.endpoints_file`)."""
    ensure_registry()
    if is_healthy(layout, node_ip):
        endpoints = load_endpoints(layout)
    else:
        down(layout)
        endpoints = write_files(layout, node_ip)
        start(layout, endpoints)
        log.info("event=registry-up public=%s private=%s", endpoints.public, endpoints.private)
    push(endpoints, archives)
    return endpoints


def serving_from(argvs: Iterable[tuple[int, list[str]]], state_dir: Path) -> list[int]:
    """The pids among (pid, argv) that run a registry `serve` with a config under state_dir."""
    return [
        pid
        for pid, argv in argvs
        if len(argv) == 3
        and Path(argv[0]).name == "registry"
        and argv[1] == "serve"
        and Path(argv[2]).is_relative_to(state_dir)
    ]


def _argvs() -> list[tuple[int, list[str]]]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:  # exited meanwhile
                continue
            found.append((int(proc.name), argv[:-1] if argv and argv[-1] == "" else argv))
    return found


def down(layout: Layout = DEFAULT_LAYOUT) -> None:
    """Stop both instances (by recorded pid) and delete their state, storage and hosts.toml files."""
    for instance in instances(layout):
        host.stop_component(instance.component)
        child = _children.pop(instance.component, None)
        if child is not None:
            child.wait(timeout=10)
    # Instances whose pid files are gone (a teardown by code that did not know the registry removed the
    # cluster dir) would hold the ports: found by their config path instead.
    host.kill_pids(serving_from(_argvs(), layout.state_dir))
    shutil.rmtree(layout.state_dir, ignore_errors=True)
    log.info("event=registry-down state=%s", layout.state_dir)
