"""A pod on one machine: containers that share a network namespace, /dev/shm and a run dir, nothing else.

Each Pod owns a network namespace created for it (loopback up, a veth pair so the host reaches the pod
IP, like kubelet or Service traffic would), a run dir on disk and a shm dir on the host's tmpfs (the
memory-backed emptyDir). Each container is `ip netns exec POD unshare --mount --pid --fork --mount-proc`
with the shm dir bind-mounted on /dev/shm and the run dir on the contract's RUN_DIR: separate mount and
PID namespaces, so the container's entrypoint is PID 1 exactly as under a container runtime.

Everything runs as root with one uid for every container (Envoy hot restart needs the same uid; tests
and CI run as root). Addresses are a private /30 in 10.213.0.0/16 that lives only on the veth pair of a
namespace this module created; no traffic leaves the machine.

Cleanup must survive failing tests: close() kills every process, deletes the namespace (which deletes
the veth pair) and removes the directories; sweep_stale() removes pods whose creating process is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from podharness import netns

NETNS_PREFIX = "hupod-"
SHM_ROOT = Path("/dev/shm")
ADDRESS_LOCK = Path("/run/lock/hotupgrade-harness.lock")
SUBNET_OCTETS = (10, 213)
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The entrypoint shim: bind the pod volumes into this container's private mount namespace, then exec.
_MOUNT_SHIM = 'set -e; mount --bind "$1" /dev/shm; mount --bind "$2" "$3"; cd "$4"; shift 4; exec "$@"'


@dataclass(frozen=True)
class PodAddresses:
    """The /30 on the pod's veth pair, and its IPv6 twin (a /126 in fd00:213::/32) when IPv6 is on."""

    host_ip: str
    pod_ip: str
    host_ip6: str = ""
    pod_ip6: str = ""


IPV6_DISABLED = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


def ipv6_twin(addresses: PodAddresses) -> PodAddresses:
    """The same pair with IPv6 addresses: 10.213.A.B -> fd00:213::A:B (hex), so both are unique together."""

    def six(ip: str) -> str:
        third, fourth = (int(octet) for octet in ip.split(".")[2:])
        return f"fd00:213::{third:x}:{fourth:x}"

    return replace(addresses, host_ip6=six(addresses.host_ip), pod_ip6=six(addresses.pod_ip))


def ipv6_enabled() -> bool:
    """Whether the kernel has IPv6 on (new network namespaces inherit `all.disable_ipv6`)."""
    try:
        return IPV6_DISABLED.read_text().strip() == "0"
    except OSError:
        return False


def addresses_for(index: int) -> PodAddresses:
    """Host and pod address of the index-th /30 in 10.213.0.0/16."""
    base = (index % 16384) * 4
    prefix = f"{SUBNET_OCTETS[0]}.{SUBNET_OCTETS[1]}.{base // 256}"
    return PodAddresses(host_ip=f"{prefix}.{base % 256 + 1}", pod_ip=f"{prefix}.{base % 256 + 2}")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children(pid: int) -> list[int]:
    """Children of every thread of pid (a child belongs to the thread that forked it)."""
    kids: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            kids.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def catches(pid: int, sig: signal.Signals) -> bool:
    """Whether pid has a handler for sig (a namespace's PID 1 ignores signals it does not catch)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    except OSError:
        return False
    return False


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid (host PIDs), depth first."""
    found: list[int] = []
    for child in _children(pid):
        found.append(child)
        found.extend(descendants(child))
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of one process from /proc, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class Container:
    """One container of a pod: PID 1 of its own PID and mount namespaces, restartable like under kubelet."""

    def __init__(self, pod: Pod, name: str) -> None:
        self.pod = pod
        self.name = name
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid1: int | None = None
        self.log_path = pod.log_dir / f"{name}.log"

    @property
    def pid(self) -> int:
        """Host PID of the container's PID 1 (its entrypoint)."""
        if self._pid1 is None:
            raise RuntimeError(f"container {self.name} is not running")
        return self._pid1

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Start the entrypoint argv with exactly env (plus PATH and HOME), like a container image."""
        if self.running():
            raise RuntimeError(f"container {self.name} is already running")
        argv = [str(arg) for arg in argv]
        self.starts += 1
        full_env = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", **env}
        cmd = [
            "ip", "netns", "exec", self.pod.netns,
            "unshare", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private",
            "--kill-child=SIGKILL",
            "/bin/sh", "-c", _MOUNT_SHIM, "sh",
            str(self.pod.shm_dir), str(self.pod.run_dir), self.pod.run_dir_mount, str(self.pod.workdir),
            *argv,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            log.write(
                f"=== {self.name} start #{self.starts} at {time.time():.3f}: {' '.join(argv)}\n".encode()
            )
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env
            )
        self._pid1 = self._find_pid1(self._proc)
        self._wait_entrypoint(self._pid1)

    @staticmethod
    def _find_pid1(proc: subprocess.Popen[bytes]) -> int:
        # `ip netns exec` execs unshare in place; unshare forks the namespace's PID 1.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kids = _children(proc.pid)
            if kids:
                return kids[0]
            if proc.poll() is not None:
                raise RuntimeError(f"container exited at once with {proc.returncode}")
            time.sleep(0.005)
        raise RuntimeError("container PID 1 did not appear")

    @staticmethod
    def _wait_entrypoint(pid: int) -> None:
        # Until the shim execs the entrypoint, the volumes may not be mounted yet: an exec (a hook)
        # entering now would see the host's /dev/shm and run dir.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                return  # exited already; wait() reports how
            if argv and not argv[0].endswith(b"unshare") and _MOUNT_SHIM.encode() not in argv:
                return
            time.sleep(0.002)
        raise RuntimeError("container entrypoint did not start")

    def wait_catching(self, sig: signal.Signals, timeout: float) -> None:
        """Wait until PID 1 handles sig: before that, the kernel drops sig for a namespace's init."""
        deadline = time.monotonic() + timeout
        while not catches(self.pid, sig):
            if time.monotonic() > deadline or not self.running():
                raise RuntimeError(f"container {self.name} does not handle {sig.name}")
            time.sleep(0.005)

    def signal(self, sig: signal.Signals) -> None:
        """Send sig to the container's PID 1, as the runtime does."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the container to exit; its exit status (negative: killed by that signal)."""
        if self._proc is None:
            raise RuntimeError(f"container {self.name} never started")
        rc = self._proc.wait(timeout=timeout)
        return rc

    def stop(self, grace: float = 10.0) -> int:
        """Kubelet's stop: SIGTERM, then SIGKILL after the grace period; the exit status."""
        if self._proc is None:
            raise RuntimeError(f"container {self.name} never started")
        if self._proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                return self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        return self._proc.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL PID 1; the kernel then kills everything else in the container's PID namespace."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=30)
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=30)

    def pids(self) -> list[int]:
        """Host PIDs of PID 1 and all its descendants."""
        if not self.running():
            return []
        return [self.pid, *descendants(self.pid)]

    def exec(
        self, argv: Sequence[str], env: Mapping[str, str], *, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside the running container (its mount, PID and network namespaces), like a hook."""
        full_env = {"PATH": CONTAINER_PATH, "HOME": "/root", "LANG": "C.UTF-8", **env}
        cmd = ["nsenter", f"--target={self.pid}", "--mount", "--pid", "--net", "--", *argv]
        return subprocess.run(
            cmd,
            check=False,
            env=full_env,
            cwd=self.pod.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Pod:
    """A network namespace plus shared volumes; containers are created with container()."""

    def __init__(self, workdir: Path, *, run_dir_mount: str, label: str = "pod") -> None:
        self.workdir = Path.cwd()
        self.base = workdir
        self.run_dir_mount = run_dir_mount
        self.index = self._next_index()
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{self.index}"
        self.label = label
        self.run_dir = workdir / "run"
        self.log_dir = workdir / "logs"
        self.shm_dir = SHM_ROOT / self.netns
        self.host_veth = f"hu{os.getpid():x}h{self.index}"[:15]
        self.addresses = PodAddresses(host_ip="", pod_ip="")
        self.containers: dict[str, Container] = {}
        self._created = False

    _counter = 0

    @classmethod
    def _next_index(cls) -> int:
        cls._counter += 1
        return cls._counter

    @property
    def ip(self) -> str:
        return self.addresses.pod_ip

    @property
    def ip6(self) -> str:
        """The pod's IPv6 address, "" when the kernel has IPv6 off."""
        return self.addresses.pod_ip6

    def create(self) -> Pod:
        """Create namespace, veth pair, run dir and shm dir."""
        sweep_stale()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.shm_dir.mkdir(mode=0o1777)
        Path(self.run_dir_mount).mkdir(parents=True, exist_ok=True)  # mount point only; stays empty
        self._created = True
        ADDRESS_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with ADDRESS_LOCK.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.addresses = self._free_addresses()
            _run("ip", "netns", "add", self.netns)
            _run("ip", "-n", self.netns, "link", "set", "lo", "up")
            _run(
                "ip",
                "link",
                "add",
                self.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.netns,
            )
            _run("ip", "addr", "add", f"{self.addresses.host_ip}/30", "dev", self.host_veth)
            _run("ip", "link", "set", self.host_veth, "up")
            _run("ip", "-n", self.netns, "addr", "add", f"{self.addresses.pod_ip}/30", "dev", "eth0")
            if ipv6_enabled():
                # nodad: usable at once, like the kubelet's CNI plugins configure pod addresses.
                self.addresses = ipv6_twin(self.addresses)
                _run(
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    f"{self.addresses.host_ip6}/126",
                    "dev",
                    self.host_veth,
                    "nodad",
                )
                pod_ip6 = f"{self.addresses.pod_ip6}/126"
                _run("ip", "-n", self.netns, "-6", "addr", "add", pod_ip6, "dev", "eth0", "nodad")
            _run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        return self

    def _free_addresses(self) -> PodAddresses:
        used = _run("ip", "-4", "-o", "addr", "show").stdout
        start = zlib.crc32(self.netns.encode())
        for offset in range(16384):
            candidate = addresses_for(start + offset)
            if f" {candidate.host_ip}/" not in used:
                return candidate
        raise RuntimeError("no free /30 in 10.213.0.0/16")

    def container(self, name: str) -> Container:
        if name not in self.containers:
            self.containers[name] = Container(self, name)
        return self.containers[name]

    def http_json(self, port: int, path: str, timeout: float = 5.0) -> object:
        """GET JSON from 127.0.0.1:port inside the pod."""
        return netns.http_json(self.netns, port, path, timeout=timeout)

    def http_get(
        self, port: int, path: str, *, method: str = "GET", timeout: float = 5.0
    ) -> tuple[int, bytes]:
        return netns.http_request(self.netns, port, path, method=method, timeout=timeout)

    def wait_port(self, port: int, timeout: float) -> None:
        """Wait until 127.0.0.1:port inside the pod accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                netns.connect(self.netns, "127.0.0.1", port, timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def netns_pids(self) -> list[int]:
        out = _run("ip", "netns", "pids", self.netns, check=False).stdout
        return [int(p) for p in out.split()]

    def close(self) -> None:
        """Kill every container and stray process, delete the namespace and the shm dir. Idempotent."""
        for container in self.containers.values():
            with contextlib.suppress(Exception):
                container.kill()
        if self._created:
            _destroy(self.netns, self.shm_dir)
            self._created = False

    def __enter__(self) -> Pod:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _destroy(name: str, shm_dir: Path) -> None:
    if (netns.NETNS_DIR / name).exists():
        for _ in range(50):
            pids = [int(p) for p in _run("ip", "netns", "pids", name, check=False).stdout.split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        _run("ip", "netns", "del", name, check=False)
    shutil.rmtree(shm_dir, ignore_errors=True)


def _stale_names() -> Iterator[str]:
    names = {p.name for p in netns.NETNS_DIR.glob(f"{NETNS_PREFIX}*")}
    names |= {p.name for p in SHM_ROOT.glob(f"{NETNS_PREFIX}*")}
    for name in sorted(names):
        creator = name.removeprefix(NETNS_PREFIX).split("-")[0]
        if creator.isdigit() and not _pid_alive(int(creator)):
            yield name


def sweep_stale() -> list[str]:
    """Remove pods left behind by test processes that died without cleaning up."""
    removed = []
    for name in _stale_names():
        _destroy(name, SHM_ROOT / name)
        removed.append(name)
    return removed
