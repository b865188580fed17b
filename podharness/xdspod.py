"""An injected pod in the `xds` bootstrap mode: its agents' environment, what the control plane serves it,
a pusher that changes routes and endpoints while upgrades run, and the listen sockets' inodes.

The sidecar pair gets the webhook's `xds` environment (docs/contract.md "Bootstrap modes"): its Envoys hold
only the ADS cluster, and the xDS test server (podharness/xds.py) gives them the listeners the static mode
has (HTTP on LISTEN_PORT to the app, tcp_proxy on TCP_LISTEN_PORT to the echo server), both over EDS
clusters. Used by tests/integration/xds and bench/hotupgrade.
"""

from __future__ import annotations

import threading
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

from agent import contract
from podharness.pod import Pod
from podharness.sidecar import TCP_UPSTREAM_PORT, UPSTREAM_PORT
from podharness.xds import ControlPlane, PushRejectedError, ServerAPI
from podharness.xdsconfig import (
    ENDPOINT,
    Route,
    Snapshot,
    eds_cluster,
    http_listener,
    load_assignment,
    route_configuration,
    tcp_listener,
)

# The namespace podharness.sidecar.SidecarPod gives its agents (HOTUPGRADE_POD_NAMESPACE).
NAMESPACE = "harness"
NODE_CLUSTER = "harness-app"
VERSION_HEADER = "x-xds-version"


def node_id(pod: Pod) -> str:
    """The node id the `xds` bootstrap gives the pod's Envoys: `<pod name>.<namespace>`."""
    return f"{pod.label}.{NAMESPACE}"


def xds_env(server: ControlPlane, *, takeover_deadline_seconds: int) -> dict[str, str]:
    """What the webhook injects in `xds` mode, pointed at the test server on the pod's veth."""
    return {
        contract.ENV_BOOTSTRAP_MODE: "xds",
        contract.ENV_XDS_ADDRESS: f"{server.ads_host}:{server.ads_port}",
        contract.ENV_XDS_NODE_CLUSTER: NODE_CLUSTER,
        contract.ENV_TAKEOVER_DEADLINE_SECONDS: str(takeover_deadline_seconds),
    }


def sidecar_snapshot(
    version: str,
    *,
    weight: int = 1,
    upstream_port: int = UPSTREAM_PORT,
    tcp_upstream_port: int = TCP_UPSTREAM_PORT,
) -> Snapshot:
    """The static mode's listeners by xDS: "http" (RDS "http", stamping the version) and "tcp", each to an
    EDS cluster on 127.0.0.1 (the app's ports: the harness's by default); `weight` is the endpoints'
    load-balancing weight, so an endpoint version changes EDS."""

    def endpoints(cluster: str, port: int) -> dict[str, object]:
        assignment = load_assignment(cluster, [("127.0.0.1", port)])
        for group in assignment["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                endpoint["load_balancing_weight"] = weight
        return assignment

    return Snapshot(
        version=version,
        resources=(
            http_listener("http", contract.LISTEN_PORT, "http"),
            route_configuration("http", [Route("/", "app", {VERSION_HEADER: version})]),
            eds_cluster("app"),
            endpoints("app", upstream_port),
            tcp_listener("tcp", contract.TCP_LISTEN_PORT, "echo"),
            eds_cluster("echo"),
            endpoints("echo", tcp_upstream_port),
        ),
    )


def endpoint_weights(snapshot: Snapshot) -> set[int]:
    """The load-balancing weights of a snapshot's endpoints (what an endpoint version changes)."""
    return {
        int(endpoint["load_balancing_weight"])
        for resource in snapshot.resources
        if resource["@type"] == ENDPOINT
        for group in resource["endpoints"]
        for endpoint in group["lb_endpoints"]
    }


@dataclass
class Pusher:
    """Pushes a new version every `interval_s` from a thread: odd versions change the route (its header),
    even ones the endpoints (their weight). Counts what the server accepted and what it refused.
    `upstream_ports`: the app's (HTTP, TCP) ports in the pod."""

    server: ServerAPI
    node: str
    interval_s: float = 1.0
    upstream_ports: tuple[int, int] = (UPSTREAM_PORT, TCP_UPSTREAM_PORT)
    pushed: int = 0
    failed: list[str] = field(default_factory=list)
    version: int = 1
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def snapshot(self, version: int) -> Snapshot:
        # Weight alternates 1, 1, 2, 2, ...: each even version moves the weight, each odd one the route.
        http, tcp = self.upstream_ports
        weight = 1 + (version // 2) % 2
        return sidecar_snapshot(str(version), weight=weight, upstream_port=http, tcp_upstream_port=tcp)

    def push_next(self) -> None:
        self.version += 1
        try:
            self.server.push(self.node, self.snapshot(self.version))
        except (OSError, urllib.error.URLError, PushRejectedError) as error:
            self.failed.append(f"v{self.version}: {error}")
            return
        self.pushed += 1

    def start(self) -> Pusher:
        self._thread = threading.Thread(target=self._run, name="xds-pusher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.push_next()

    def stop(self) -> int:
        """Stop pushing; the number of accepted pushes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self.pushed


def listen_inodes(pod: Pod, ports: tuple[int, ...]) -> dict[int, int]:
    """Socket inode of each TCP listen socket on `ports` in the pod's network namespace.

    Hot restart passes the listen socket itself (SCM_RIGHTS) to the new Envoy, so the inode stays the same
    across upgrades; a rebound socket would get a new one.
    """
    pids = pod.netns_pids()
    if not pids:
        raise RuntimeError(f"no process in {pod.netns}")
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/{pids[0]}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and port in ports:  # 0A: TCP_LISTEN
                found[port] = int(fields[9])
    return found
