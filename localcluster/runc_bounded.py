"""runc for our dockerd, minus the capabilities this host's root does not have (standard library only).

Docker 20.10 gives a `--privileged` container every capability the kernel knows (moby `oci/caps`
GetAllCapabilities), and runc fails with "unable to apply caps: operation not permitted" when one is
outside the bounding set, as CAP_SYS_RESOURCE is for root on this kind of machine (localcluster/README.md).
kind runs its nodes `--privileged`. Our engine uses this file as its default runtime: it removes from the
OCI spec (`create`/`run`: the bundle's config.json; `exec`: the --process file) every capability not in its
own bounding set, then execs Debian's runc with the same arguments. Nothing else changes; containerd inside
the nodes already asks only for the capabilities it has (`WithAllCurrentCapabilities`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

RUNC = "/usr/sbin/runc"
# linux/capability.h, by number.
CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]


def missing_caps(cap_bnd_hex: str) -> set[str]:
    """Capability names (CAP_...) that a CapBnd mask (hex, /proc/self/status) does not contain."""
    mask = int(cap_bnd_hex, 16)
    return {f"CAP_{name}" for bit, name in enumerate(CAPS) if not mask >> bit & 1}


def without(process: dict[str, Any], missing: set[str]) -> bool:
    """Drop missing capabilities from an OCI process spec in place; whether anything changed."""
    caps = process.get("capabilities") or {}
    changed = False
    for kind, names in caps.items():
        kept = [n for n in names if n not in missing]
        changed |= kept != names
        caps[kind] = kept
    return changed


def spec_file(args: list[str]) -> Path | None:
    """The JSON file runc will read the process from, for `create`/`run` (bundle) and `exec` (--process)."""
    command = next((a for a in args if not a.startswith("-") and a in ("create", "run", "exec")), None)
    if command is None:
        return None
    rest = args[args.index(command) + 1 :]
    flag = ("--process", "-p") if command == "exec" else ("--bundle", "-b")
    for i, arg in enumerate(rest):
        for name in flag:
            if arg == name and i + 1 < len(rest):
                value = rest[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            return Path(value) if command == "exec" else Path(value) / "config.json"
    return Path("config.json") if command != "exec" else None


def main() -> None:
    args = sys.argv[1:]
    path = spec_file(args)
    if path is not None and path.is_file():
        status = Path("/proc/self/status").read_text()
        cap_bnd = next(line.split()[1] for line in status.splitlines() if line.startswith("CapBnd:"))
        doc = json.loads(path.read_text())
        process = doc if "args" in doc and "process" not in doc else doc.get("process", {})
        if without(process, missing_caps(cap_bnd)):
            path.write_text(json.dumps(doc))
    os.execv(RUNC, [RUNC, *args])


if __name__ == "__main__":
    main()
