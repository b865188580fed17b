"""`python -m localcluster up|down|status|apiserver|build|images|logs` (see README.md)."""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import sys

from localcluster import build, lifecycle
from localcluster import settings as s
from localcluster.imagebuilder import builder

LOCK_FILE = s.CACHE_DIR / ".cluster.lock"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/go/bin")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status", "apiserver", "build", "images", "logs"))
    parser.add_argument("component", nargs="?", default="kubelet", help="for `logs`: which component")
    parser.add_argument("--purge", action="store_true", help="for `down`: also delete the image store")
    args = parser.parse_args(argv)
    # ip, iptables, debootstrap, modprobe live in sbin: make sure a minimal CI environment finds them.
    path = os.environ.get("PATH", "").split(":")
    os.environ["PATH"] = ":".join([*path, *(d for d in SBIN_DIRS if d not in path)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    if args.command in ("status", "logs"):
        return run(args)
    # One cluster per machine, shared: concurrent up/down/builds wait for each other.
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run(args)


def run(args: argparse.Namespace) -> int:
    if args.command == "up":
        took = lifecycle.up()
        print(f"cluster up in {took:.1f}s; export KUBECONFIG={s.ADMIN_KUBECONFIG}")
    elif args.command == "apiserver":
        took = lifecycle.up(apiserver_only=True)
        print(f"etcd + kube-apiserver up in {took:.1f}s; export KUBECONFIG={s.ADMIN_KUBECONFIG}")
    elif args.command == "down":
        lifecycle.down(purge=args.purge)
    elif args.command == "status":
        healthy = lifecycle.is_healthy()
        print("healthy" if healthy else "not healthy")
        return 0 if healthy else 1
    elif args.command == "build":
        print(build.ensure_kubernetes())
    elif args.command == "images":
        archives = builder.ensure_all()
        for archive in archives:
            print(archive)
        if lifecycle.is_healthy():  # the node runs: it gets what was just built (import or registry push)
            lifecycle.refresh_images(archives)
    elif args.command == "logs":
        print(lifecycle.logs_tail(args.component, 200))
    return 0


if __name__ == "__main__":
    sys.exit(main())
