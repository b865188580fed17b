"""A single-node stand-in for kindnetd, for the offline kind node image only (standard library only).

kind's default CNI manifest runs `kindnetd` (a Go program of the kindnet project that the Go module proxy
does not serve). On one node its job is to write the CNI configuration for the node's pod CIDR: a `ptp`
veth per pod, `host-local` addresses, `portmap`. This does that and nothing more: no routes to other
nodes (there are none), no masquerading of pod traffic that leaves the cluster (an offline machine has no
such traffic), no network policies. It runs in kindnet's DaemonSet (hostNetwork, the kindnet
ServiceAccount, HOST_IP from the downward API) and rewrites the file when the node's CIDRs change.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import ssl
import struct
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CNI_CONFIG = Path("/etc/cni/net.d/10-kindnet.conflist")
SYS_NET = Path("/sys/class/net")
POLL_SECONDS = 10.0
SIOCGIFADDR = 0x8915  # linux/sockios.h


def conflist(pod_cidrs: list[str], mtu: int) -> str:
    """kindnetd's CNI configuration (kindnet `cni.go`): ptp + host-local over the node's CIDRs, portmap."""
    doc = {
        "cniVersion": "0.4.0",
        "name": "kindnet",
        "plugins": [
            {
                "type": "ptp",
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/run/cni-ipam-state",
                    "routes": [{"dst": "::/0" if ":" in cidr else "0.0.0.0/0"} for cidr in pod_cidrs],
                    "ranges": [[{"subnet": cidr}] for cidr in pod_cidrs],
                },
                "mtu": mtu,
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def node_pod_cidrs(nodes: dict[str, Any], host_ip: str) -> list[str]:
    """The pod CIDRs of the node (in a NodeList) that has host_ip among its addresses; [] if none yet."""
    for node in nodes.get("items", []):
        addresses = {a.get("address") for a in node.get("status", {}).get("addresses", [])}
        if host_ip in addresses:
            spec = node.get("spec", {})
            cidrs: list[str] = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
            return cidrs
    return []


def interface_mtu(host_ip: str) -> int:
    """The MTU of the interface that holds host_ip (kindnetd does the same), else 1500."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for iface in sorted(p.name for p in SYS_NET.iterdir()):
            try:
                raw = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()[:15]))
            except OSError:
                continue
            if socket.inet_ntoa(raw[20:24]) == host_ip:
                return int((SYS_NET / iface / "mtu").read_text())
    return 1500


def list_nodes() -> dict[str, Any]:
    """GET /api/v1/nodes with the pod's ServiceAccount (in-cluster configuration)."""
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    token = (SERVICE_ACCOUNT / "token").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    request = urllib.request.Request(
        f"https://{host}:{port}/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, context=ctx, timeout=10) as resp:
        nodes: dict[str, Any] = json.load(resp)
        return nodes


def write_if_changed(text: str) -> bool:
    """Atomically replace the CNI configuration when it differs; whether it was written."""
    if CNI_CONFIG.exists() and CNI_CONFIG.read_text() == text:
        return False
    tmp = CNI_CONFIG.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(CNI_CONFIG)
    return True


def main() -> int:
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))
    host_ip = os.environ["HOST_IP"]
    mtu = interface_mtu(host_ip)
    print(f"event=start host_ip={host_ip} mtu={mtu}", flush=True)
    while True:
        try:
            cidrs = node_pod_cidrs(list_nodes(), host_ip)
        except OSError as exc:  # API not reachable yet (kube-proxy starting): try again
            print(f"event=list-nodes-failed error={exc}", flush=True)
            cidrs = []
        if cidrs and write_if_changed(conflist(cidrs, mtu)):
            print(f"event=cni-config-written path={CNI_CONFIG} pod_cidrs={','.join(cidrs)}", flush=True)
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    sys.exit(main())
