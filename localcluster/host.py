"""Host-side I/O for the cluster: processes, mounts, interfaces, iptables, cgroups, sysctls."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from localcluster import settings as s
from localcluster.configs import Component

log = logging.getLogger("localcluster")

CGROUP_ROOT = Path("/sys/fs/cgroup")


def run(argv: Sequence[str], check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; log it unless quiet."""
    if not quiet:
        log.info("event=run argv=%s", " ".join(argv))
    return subprocess.run(list(argv), check=check, text=True, capture_output=True)


# ---- apt packages -------------------------------------------------------------------------------


def missing_packages(packages: Iterable[str]) -> list[str]:
    """Debian packages from the list that are not installed."""
    missing = []
    for pkg in packages:
        out = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False, quiet=True)
        if "install ok installed" not in out.stdout:
            missing.append(pkg)
    return missing


def ensure_packages(packages: Iterable[str]) -> None:
    """apt-get install what is missing; services are never started by the packages' scripts."""
    missing = missing_packages(packages)
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("event=apt-install packages=%s", ",".join(missing))
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        capture_output=True,
    )


# ---- processes ----------------------------------------------------------------------------------


def pid_file(name: str) -> Path:
    return s.PID_DIR / f"{name}.pid"


def _exe_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def start(component: Component) -> subprocess.Popen[bytes]:
    """Start a component detached from our session, output to its log file, pid recorded."""
    s.LOG_DIR.mkdir(parents=True, exist_ok=True)
    s.PID_DIR.mkdir(parents=True, exist_ok=True)
    logf = (s.LOG_DIR / f"{component.name}.log").open("ab")
    env = {**os.environ, **dict(component.env)}
    proc = subprocess.Popen(
        list(component.argv),
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    logf.close()
    pid_file(component.name).write_text(f"{proc.pid} {component.argv[0]}\n")
    log.info("event=started component=%s pid=%d", component.name, proc.pid)
    return proc


def recorded_pid(name: str) -> int | None:
    """The pid we recorded for a component, if that process still runs the same binary."""
    try:
        pid_text, exe = pid_file(name).read_text().split()
    except (OSError, ValueError):
        return None
    pid = int(pid_text)
    actual = _exe_of(pid)
    if actual is None or Path(actual).name.removesuffix(" (deleted)") != Path(exe).name:
        return None
    return pid


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and not _is_zombie(p)]
        if left:
            time.sleep(0.1)
    return left


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def kill_pids(pids: Iterable[int], grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL what is left after the grace period."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in _wait_gone(pids, grace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, 5.0)


def stop_component(name: str, grace: float = 5.0) -> None:
    """Stop a component by its recorded pid (never by name)."""
    pid = recorded_pid(name)
    if pid is not None:
        log.info("event=stop component=%s pid=%d", name, pid)
        kill_pids([pid], grace)
    pid_file(name).unlink(missing_ok=True)


def shim_pids() -> list[int]:
    """containerd shims that serve *our* containerd (their -address is our private socket)."""
    pids = []
    needle = str(s.CONTAINERD_SOCKET).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline.split(b"\0")[0] and needle in cmdline:
            pids.append(int(entry.name))
    return pids


def kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory in every hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / "kubepods"
        if top.is_dir():
            found.extend(p for p in top.rglob("*") if p.is_dir())
            found.append(top)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def cgroup_pids(cgroups: Iterable[Path]) -> set[int]:
    pids: set[int] = set()
    for cg in cgroups:
        try:
            pids.update(int(x) for x in (cg / "cgroup.procs").read_text().split())
        except OSError:
            continue
    return pids


def kill_pod_processes() -> None:
    """SIGKILL every process in the kubepods cgroups, then our shims, then remove the cgroups."""
    cgroups = kubepods_cgroups()
    for _ in range(20):
        pids = cgroup_pids(cgroups)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    shims = shim_pids()
    if shims:
        log.info("event=kill-shims pids=%s", shims)
        kill_pids(shims, grace=2.0)
    for cg in kubepods_cgroups():
        try:
            cg.rmdir()
        except OSError as exc:
            log.warning("event=cgroup-rmdir-failed path=%s error=%s", cg, exc)


# ---- mounts, interfaces, iptables, sysctls ------------------------------------------------------------


def our_mounts() -> list[str]:
    """Mount points under our state/run dirs, deepest first (mountinfo escapes spaces as \\040)."""
    roots = (str(s.STATE_ROOT), str(s.RUN_DIR))
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all() -> None:
    for _ in range(3):
        points = our_mounts()
        if not points:
            return
        for point in points:
            if run(["umount", point], check=False, quiet=True).returncode != 0:
                run(["umount", "-l", point], check=False, quiet=True)
    left = our_mounts()
    if left:
        raise RuntimeError(f"mounts left behind: {left}")


def delete_bridge() -> None:
    if Path(f"/sys/class/net/{s.BRIDGE_NAME}").exists():
        for port in Path(f"/sys/class/net/{s.BRIDGE_NAME}/brif").iterdir():
            run(["ip", "link", "delete", port.name], check=False)
        run(["ip", "link", "delete", s.BRIDGE_NAME], check=False)


def chains_to_remove(rules: str, prefixes: Sequence[str]) -> tuple[list[list[str]], list[str]]:
    """From `iptables -S` output: (rules to delete as argv tails, our chains to flush and delete)."""
    deletes: list[list[str]] = []
    chains: list[str] = []
    for line in rules.splitlines():
        parts = shlex.split(line)
        if len(parts) >= 2 and parts[0] == "-N" and parts[1].startswith(tuple(prefixes)):
            chains.append(parts[1])
        elif (
            len(parts) >= 2
            and parts[0] == "-A"
            and not parts[1].startswith(tuple(prefixes))
            and any(p.startswith(tuple(prefixes)) for p in parts[2:])
        ):
            deletes.append(["-D", *parts[1:]])
    return deletes, chains


def scrub_iptables() -> None:
    """Remove every KUBE-*/CNI-* chain and every rule that jumps into one, IPv4 and IPv6."""
    for tool in ("iptables", "ip6tables"):
        if run(["sh", "-c", f"command -v {tool}"], check=False, quiet=True).returncode != 0:
            continue
        for table in ("filter", "nat", "mangle", "raw"):
            out = run([tool, "-w", "-t", table, "-S"], check=False, quiet=True)
            if out.returncode != 0:
                continue
            deletes, chains = chains_to_remove(out.stdout, s.CHAIN_PREFIXES)
            for rule in deletes:
                run([tool, "-w", "-t", table, *rule], check=False, quiet=True)
            for chain in chains:
                run([tool, "-w", "-t", table, "-F", chain], check=False, quiet=True)
            for chain in chains:
                run([tool, "-w", "-t", table, "-X", chain], check=False, quiet=True)


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def apply_sysctls(wanted: dict[str, str]) -> None:
    """Set host sysctls, remembering the old values once (so a crash + re-up keeps the originals)."""
    saved: dict[str, str] = json.loads(s.SAVED_SYSCTLS.read_text()) if s.SAVED_SYSCTLS.exists() else {}
    # br_netfilter may be built in (no modprobe, no modules dir) or a module.
    if (
        "net.bridge.bridge-nf-call-iptables" in wanted
        and not _sysctl_path("net.bridge").exists()
        and shutil.which("modprobe")
    ):
        run(["modprobe", "br_netfilter"], check=False, quiet=True)
    for key, value in wanted.items():
        path = _sysctl_path(key)
        if not path.exists():
            log.warning("event=sysctl-missing key=%s", key)
            continue
        saved.setdefault(key, path.read_text().strip())
        path.write_text(value)
    s.SAVED_SYSCTLS.parent.mkdir(parents=True, exist_ok=True)
    s.SAVED_SYSCTLS.write_text(json.dumps(saved))


def restore_sysctls() -> None:
    if not s.SAVED_SYSCTLS.exists():
        return
    for key, value in json.loads(s.SAVED_SYSCTLS.read_text()).items():
        try:
            _sysctl_path(key).write_text(value)
        except OSError as exc:
            log.warning("event=sysctl-restore-failed key=%s error=%s", key, exc)
    s.SAVED_SYSCTLS.unlink()


def node_ip() -> str:
    """The host's source address for its default route (what pods and the API server use)."""
    out = run(["ip", "-j", "route", "get", "1.1.1.1"], check=False, quiet=True)
    if out.returncode == 0:
        routes = json.loads(out.stdout)
        if routes and routes[0].get("prefsrc"):
            return str(routes[0]["prefsrc"])
    addrs = json.loads(run(["ip", "-j", "-4", "addr", "show", "scope", "global"], quiet=True).stdout)
    for iface in addrs:
        if iface["ifname"] == s.BRIDGE_NAME:
            continue
        for info in iface.get("addr_info", []):
            return str(info["local"])
    raise RuntimeError("no global IPv4 address on this host for the node IP")
