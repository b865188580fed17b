"""`make e2e-kind`: the e2e suite on a kind cluster, with Docker and the internet or offline.

`python -m localcluster.kind e2e [--offline] [--tests "PATHS"] [PYTEST ARGS...]`: an engine (the running one,
or Debian's started here and stopped at the end), the pinned kind (from the Go module proxy, cached), the
images of images/Dockerfile (images/kind-build.sh), a cluster from e2e/kind-config.yaml on kind's node image
(online: kind's upstream image; offline: one built here, localcluster/kindnode/), the images loaded, the pod
and service CIDRs routed to the node (the suite talks to pod IPs and ClusterIPs from the host), the suite,
and a teardown that always runs: routes, cluster, its kubeconfig entries (the file when it is ours), and the
engine if started here. The suite's exit code is the command's. `build [--offline]`: every artefact, no
cluster. Settings from the environment: KIND, KIND_CLUSTER, KIND_NODE_IMAGE, KIND_KUBECONFIG (mk/e2e.mk).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster import docker, dockerimages
from localcluster import settings as s
from localcluster.kindnode import gobuild, node
from localcluster.kindnode import versions as v

log = logging.getLogger("localcluster.kind")

KIND_CONFIG = s.REPO_ROOT / "e2e" / "kind-config.yaml"
CLUSTER = os.environ.get("KIND_CLUSTER", "hotupgrade-e2e")
DEFAULT_KUBECONFIG = Path("/tmp/hotupgrade-kind.kubeconfig")
KUBECONFIG = Path(os.environ.get("KIND_KUBECONFIG") or DEFAULT_KUBECONFIG)
# Tests that need the local cluster (its registry and containerd): left out on kind, where they would skip,
# and a skip fails under CI (tests/conftest.py).
LOCAL_CLUSTER_ONLY = ("e2e/test_pull_window.py",)
MODULES = Path("/lib/modules")
# kube-proxy's count of the packets its iptables mode drops because conntrack marked them INVALID
# (KUBE-FORWARD, kubernetes#74839); served on its metrics address, 127.0.0.1:10249 by default.
INVALID_DROPS = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"
KUBE_PROXY_METRICS = "http://127.0.0.1:10249/metrics"


def routed_subnets(config_text: str) -> list[str]:
    """networking.podSubnet and serviceSubnet of a kind config (kind's defaults when unset): what the host
    routes to the node. Pod IPs for the load and the agents' /status; ClusterIPs for the tests that call a
    Service, as a client in the cluster would (kube-proxy in the node DNATs them in PREROUTING)."""
    networking = (yaml.safe_load(config_text) or {}).get("networking", {})
    return [
        str(networking.get("podSubnet", "10.244.0.0/16")),
        str(networking.get("serviceSubnet", "10.96.0.0/16")),
    ]


def invalid_drops(metrics_text: str) -> float | None:
    """The INVALID_DROPS counter in kube-proxy's /metrics text; None when it is not exported (nftables or
    ipvs mode, or conntrack.tcpBeLiberal set: kube-proxy then installs no such rule)."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == INVALID_DROPS:
                return float(sample.value)
    return None


def kind_binary() -> str:
    """KIND from the environment (a user's own), else the pinned one built from the Go module proxy."""
    return os.environ.get("KIND") or str(gobuild.ensure_kind())


def _run(argv: Sequence[str], env: Mapping[str, str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log.info("event=run argv=%s", " ".join(argv))
    return subprocess.run(list(argv), env=dict(env), text=True, check=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def _inspect(env: Mapping[str, str], *args: str) -> str:
    return _run(["docker", *args], env, capture_output=True).stdout.strip()


@contextlib.contextmanager
def cluster(kind: str, env: Mapping[str, str], image: str) -> Iterator[None]:
    """A kind cluster for the block, deleted afterwards (with its kubeconfig)."""
    delete = [kind, "delete", "cluster", "--name", CLUSTER, "--kubeconfig", str(KUBECONFIG)]
    subprocess.run(delete, env=dict(env), capture_output=True, check=False)
    # kind bind-mounts /lib/modules into the node; docker creates a missing source directory on the host
    # (this kernel has its modules built in, so there is none): remove it again if it was ours.
    had_modules = MODULES.exists()
    try:
        _run(
            [
                kind,
                "create",
                "cluster",
                "--name",
                CLUSTER,
                "--image",
                image,
                "--config",
                str(KIND_CONFIG),
                "--kubeconfig",
                str(KUBECONFIG),
                "--wait",
                "5m",
            ],
            env,
        )
        yield
    finally:
        # `kind delete` takes its entries out of the kubeconfig; only our own file is removed (KIND_KUBECONFIG
        # may name a user's kubeconfig with other clusters in it).
        subprocess.run(delete, env=dict(env), check=False)
        if KUBECONFIG == DEFAULT_KUBECONFIG:
            KUBECONFIG.unlink(missing_ok=True)
        if not had_modules and MODULES.is_dir() and not any(MODULES.iterdir()):
            MODULES.rmdir()


@contextlib.contextmanager
def node_routes(env: Mapping[str, str]) -> Iterator[None]:
    """The kind pod and service CIDRs routed to the node, so the host reaches pod IPs and ClusterIPs."""
    node_ip = _inspect(
        env,
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        f"{CLUSTER}-control-plane",
    )
    cidrs = routed_subnets(KIND_CONFIG.read_text())
    try:
        for cidr in cidrs:
            _run(["ip", "route", "replace", cidr, "via", node_ip], env)
        yield
    finally:
        for cidr in cidrs:
            subprocess.run(["ip", "route", "del", cidr, "via", node_ip], check=False)


def node_invalid_drops(env: Mapping[str, str]) -> float | None:
    """The node's kube-proxy INVALID_DROPS counter now; None when it cannot be read.

    Why it is watched: the host reaches pods through the node (node_routes), so every packet of the suite's
    load crosses the node's FORWARD chain and kube-proxy's INVALID drop there; on the local cluster the host
    is the node and nothing is forwarded. A FIN dropped there turns a clean close into a reset at the
    client's next send, so a TCP reset seen only on kind is checked against this count first."""
    out = subprocess.run(
        ["docker", "exec", f"{CLUSTER}-control-plane", "curl", "-sf", "--max-time", "5", KUBE_PROXY_METRICS],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    return invalid_drops(out.stdout) if out.returncode == 0 else None


def drops_line(before: float | None, after: float | None) -> str:
    """What the run prints about the packets kube-proxy dropped as INVALID while the suite ran."""
    if before is None or after is None:
        return f"kind node: INVALID drops during the suite unknown (no {INVALID_DROPS} from kube-proxy)"
    return (
        f"kind node: packets kube-proxy dropped as conntrack INVALID during the suite: {after - before:.0f}"
    )


def local_cluster_only(tests: Sequence[str]) -> list[str]:
    """The tests named (pytest paths or node ids) that only the local cluster can run."""
    return [test for test in tests if test.split("::")[0].rstrip("/") in LOCAL_CLUSTER_ONLY]


def suite_argv(tests: Sequence[str], pytest_args: Sequence[str]) -> list[str]:
    """pytest's arguments on kind: the tests (paths, as pytest takes them; e2e when none) without
    LOCAL_CLUSTER_ONLY, which `--ignore` leaves out of a directory (a path named: local_cluster_only)."""
    return [*(tests or ["e2e"]), *(f"--ignore={path}" for path in LOCAL_CLUSTER_ONLY), *pytest_args]


def e2e(offline: bool, pytest_args: Sequence[str], tests: Sequence[str] = ()) -> int:
    """Build, create, load, route, run the suite, tear down; the suite's exit code."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    with docker.engine() as engine:
        env = engine.client_env()
        timings["engine"] = time.monotonic() - started
        kind = kind_binary()
        timings["kind"] = time.monotonic() - started
        dockerimages.build_e2e_images(env, offline=offline)
        timings["images"] = time.monotonic() - started
        image = (
            node.ensure_node_image(env)
            if offline
            else (os.environ.get("KIND_NODE_IMAGE") or v.UPSTREAM_NODE_IMAGE)
        )
        timings["node-image"] = time.monotonic() - started
        with cluster(kind, env, image):
            timings["cluster"] = time.monotonic() - started
            # One load for all: kind saves them into one archive, so shared layers travel once.
            _run([kind, "load", "docker-image", "--name", CLUSTER, *dockerimages.E2E_IMAGES], env)
            timings["load"] = time.monotonic() - started
            with node_routes(env):
                suite_env = {
                    **env,
                    "KUBECONFIG": str(KUBECONFIG),
                    # How a test loads an image it builds on demand (e2e/previmage.py).
                    "E2E_KIND": kind,
                    "E2E_KIND_CLUSTER": CLUSTER,
                    "E2E_KIND_OFFLINE": "1" if offline else "",
                }
                drops = node_invalid_drops(env)
                rc = subprocess.run(
                    [sys.executable, "-m", "pytest", *suite_argv(tests, pytest_args)],
                    cwd=s.REPO_ROOT,
                    env=suite_env,
                    check=False,
                ).returncode
                timings["suite"] = time.monotonic() - started
                print(drops_line(drops, node_invalid_drops(env)), flush=True)
    timings["total"] = time.monotonic() - started
    print(
        "kind-e2e timings (s, cumulative): " + " ".join(f"{k}={t:.0f}" for k, t in timings.items()),
        flush=True,
    )
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.kind", description=__doc__)
    parser.add_argument("command", choices=("e2e", "build"))
    parser.add_argument("--offline", action="store_true", help="build the base and node images here")
    parser.add_argument(
        "--tests",
        default="",
        help="what the suite runs: pytest paths, space-separated (default: e2e, the whole suite)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.offline and os.environ.get("KIND_NODE_IMAGE"):
        parser.error(
            "KIND_NODE_IMAGE names a node image to pull, and offline the node image is built here: "
            "unset KIND_NODE_IMAGE, or drop KIND_OFFLINE (--offline) to pull it"
        )
    tests = args.tests.split()
    if only := local_cluster_only(tests):
        parser.error(
            f"{' '.join(only)} needs the local cluster's registry and containerd: run it with `make e2e`"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    os.environ["PATH"] = ":".join(
        [*os.environ.get("PATH", "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    )
    if args.command == "e2e":
        return e2e(args.offline, rest, tests)
    with docker.engine() as engine:  # build: every artefact, no cluster (warms the caches)
        env = engine.client_env()
        print(kind_binary())
        dockerimages.build_e2e_images(env, offline=args.offline)
        if args.offline:
            print(node.ensure_node_image(env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
