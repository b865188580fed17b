"""A Docker engine for `make e2e-kind` and the Dockerfile tests: the one that runs, or Debian's, started here.

When no engine answers, Debian's `docker.io` is installed (if missing) and `dockerd` is started by hand
(no systemd) with its own socket, pid file, exec root and data root, and stopped again by whoever started
it. It must not break the local cluster that may run beside it: dockerd with iptables on sets the FORWARD
policy to DROP (moby `libnetwork/drivers/bridge/setup_ip_forwarding.go`), which silently drops the local
cluster's bridged pod traffic (br_netfilter). So ours runs with `--iptables=false --ip-forward=false`, no
default bridge and no masquerading: it writes no rule and no sysctl, and `kind` nodes are reached by
their bridge addresses and the userland proxy. Nothing here touches an engine it did not start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from localcluster import host
from localcluster import settings as s

log = logging.getLogger("localcluster.docker")

ENGINE_DIR = Path("/run/sidecar-hotupgrade-docker")
SOCKET = ENGINE_DIR / "docker.sock"
DOCKER_HOST = f"unix://{SOCKET}"
PID_FILE = ENGINE_DIR / "dockerd.pid"
LOG_FILE = ENGINE_DIR / "dockerd.log"
# The client that ships with Debian's engine: its built-in BuildKit client serves `RUN --mount`
# (a newer `docker` on PATH may want the buildx plugin for that, which Debian 12 does not package).
CLIENT_DIR = ENGINE_DIR / "bin"
DEBIAN_CLIENT = Path("/usr/bin/docker")
DOCKERD = Path("/usr/sbin/dockerd")
START_TIMEOUT = 60.0
RUNTIME = "runc-bounded"
# dockerd processes this process started (reaped by stop(), never left as zombies or unwaited Popens).
_STARTED: dict[int, subprocess.Popen[bytes]] = {}


def data_root() -> Path:
    """Images and containers of our engine: cached like every other build artefact."""
    return s.CACHE_DIR / "docker"


def dockerd_argv(root: Path) -> list[str]:
    """dockerd that writes no iptables rule and no sysctl; everything it owns lives in our directories."""
    return [
        str(DOCKERD),
        f"--host=unix://{SOCKET}",
        f"--pidfile={PID_FILE}",
        f"--exec-root={ENGINE_DIR / 'exec'}",
        f"--data-root={root}",
        f"--config-file={ENGINE_DIR / 'daemon.json'}",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which root lacks on this kind of machine
        # (localcluster/README.md); 0 leaves the score alone.
        "--oom-score-adjust=0",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]


def daemon_config(runtime: Path) -> dict[str, object]:
    """daemon.json: runc through runc_bounded.py (no capability outside root's bounding set) by default."""
    return {"runtimes": {RUNTIME: {"path": str(runtime)}}, "default-runtime": RUNTIME}


def install_runtime() -> Path:
    """Copy runc_bounded.py next to the engine (the work tree may move while it runs)."""
    CLIENT_DIR.mkdir(parents=True, exist_ok=True)
    path = CLIENT_DIR / "runc-bounded"
    source = (Path(__file__).resolve().parent / "runc_bounded.py").read_text()
    path.write_text("#!/usr/bin/python3 -I\n" + source)
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class Engine:
    """A reachable engine: the environment its clients need and whether we started it."""

    env: Mapping[str, str]
    started_here: bool

    def client_env(self) -> dict[str, str]:
        """os.environ plus what points `docker` (and kind, which runs `docker`) at this engine."""
        return {**os.environ, **self.env}


def answers(env: Mapping[str, str]) -> bool:
    """Whether `docker info` reaches an engine with this environment."""
    docker = shutil.which("docker", path=env.get("PATH")) or str(DEBIAN_CLIENT)
    try:
        out = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            env=dict(env),
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def engine_env() -> dict[str, str]:
    """What points docker clients at our engine: its socket, and its own client first on PATH."""
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {"DOCKER_HOST": DOCKER_HOST, "PATH": f"{CLIENT_DIR}:{path}"}


def is_ours(env: Mapping[str, str]) -> bool:
    """Whether env points docker clients at the engine started here (engine_env)."""
    return env.get("DOCKER_HOST") == DOCKER_HOST


def _our_pid() -> int | None:
    """The pid in our pid file if that process is still dockerd."""
    try:
        pid = int(PID_FILE.read_text().split()[0])
        exe = os.readlink(f"/proc/{pid}/exe")
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(exe.removesuffix(" (deleted)")).name == "dockerd" else None


def ensure_installed() -> None:
    """Debian's docker.io, installed without letting its maintainer scripts start the service."""
    if not host.missing_packages(["docker.io"]):
        return
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        # invoke-rc.d asks this script whether to start services; 101 = "no" (Debian policy 9.3.3).
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        host.ensure_packages(["docker.io"])
    finally:
        if ours:
            policy.unlink(missing_ok=True)


def start() -> Engine:
    """Start our dockerd (idempotent) and wait until it answers."""
    ensure_installed()
    env = engine_env()
    if _our_pid() is not None and answers({**os.environ, **env}):
        return Engine(env, started_here=False)
    ENGINE_DIR.mkdir(parents=True, exist_ok=True)
    CLIENT_DIR.mkdir(exist_ok=True)
    link = CLIENT_DIR / "docker"
    link.unlink(missing_ok=True)
    link.symlink_to(DEBIAN_CLIENT)
    (ENGINE_DIR / "daemon.json").write_text(json.dumps(daemon_config(install_runtime())) + "\n")
    root = data_root()
    root.mkdir(parents=True, exist_ok=True)
    argv = dockerd_argv(root)
    log.info("event=dockerd-start argv=%s", " ".join(argv))
    with LOG_FILE.open("ab") as logf:
        child = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    _STARTED[child.pid] = child
    deadline = time.monotonic() + START_TIMEOUT
    while not answers({**os.environ, **env}):
        if time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not answer within {START_TIMEOUT:.0f}s; see {LOG_FILE}")
        time.sleep(0.5)
    log.info("event=dockerd-up pid=%s socket=%s", _our_pid(), SOCKET)
    return Engine(env, started_here=True)


def _alive(pid: int) -> bool:
    """Whether pid still runs; reaps it when this process started it."""
    child = _STARTED.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop() -> None:
    """Remove what our engine's containers and networks left, then stop dockerd and its containerd."""
    pid = _our_pid()
    if pid is None:
        return
    env = {**os.environ, **engine_env()}
    docker = str(DEBIAN_CLIENT)
    ids = subprocess.run(
        [docker, "ps", "-aq"], env=env, capture_output=True, text=True, check=False
    ).stdout.split()
    if ids:
        subprocess.run([docker, "rm", "-f", "-v", *ids], env=env, capture_output=True, check=False)
    # User-defined networks (kind's) are bridges on the host: remove them so no interface is left.
    names = subprocess.run(
        [docker, "network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if names:
        subprocess.run([docker, "network", "rm", *names], env=env, capture_output=True, check=False)
    log.info("event=dockerd-stop pid=%d", pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _STARTED.pop(pid, None)
    for leftover in ("exec", "bin"):
        shutil.rmtree(ENGINE_DIR / leftover, ignore_errors=True)


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """The engine that answers (DOCKER_HOST or the default socket), else ours for the duration."""
    if answers(os.environ):
        yield Engine({}, started_here=False)
        return
    started = start()
    try:
        yield started
    finally:
        if started.started_here:
            stop()


# ---- checking that nothing is left behind ------------------------------------------------------------


_COUNTERS = re.compile(r"\[\d+:\d+\]")


def rules_without_counters(iptables_save: str) -> list[str]:
    """iptables-save output reduced to what it says: no comments, no packet/byte counters."""
    lines = []
    for line in iptables_save.splitlines():
        if not line or line.startswith("#"):
            continue
        lines.append(_COUNTERS.sub("", line).rstrip())
    return lines


def iptables_rules() -> dict[str, list[str]]:
    """The IPv4 and IPv6 rule sets of the host, without counters."""
    rules = {}
    for tool in ("iptables-save", "ip6tables-save"):
        out = subprocess.run([tool], capture_output=True, text=True, check=False)
        rules[tool] = rules_without_counters(out.stdout) if out.returncode == 0 else []
    return rules


def run_client(env: Mapping[str, str], *args: str) -> str:
    """Run the docker client with env; its stdout."""
    docker = shutil.which("docker", path=env.get("PATH")) or str(DEBIAN_CLIENT)
    return subprocess.run([docker, *args], env=dict(env), capture_output=True, text=True, check=True).stdout


def engine_info(env: Mapping[str, str]) -> dict[str, object]:
    """`docker info` as JSON (server version, cgroup driver/version, storage driver)."""
    out = subprocess.run(
        [
            shutil.which("docker", path=env.get("PATH")) or str(DEBIAN_CLIENT),
            "info",
            "--format",
            "{{json .}}",
        ],
        env=dict(env),
        capture_output=True,
        text=True,
        check=True,
    )
    info: dict[str, object] = json.loads(out.stdout)
    return info
