"""The new image changes Envoy's configuration (issue 12, scenario 3).

Old image: the default bootstrap plus a `legacy` listener. New image: `legacy` removed, an `extra`
listener added, the `tcp` listener moved to another port, the HTTP route sent to a renamed cluster with
a response header that proves the new configuration serves. Envoy's child asks its parent for a socket
per listener address (PassListenSocket): the HTTP listener's sockets must be the very same (same inode,
handed over), the moved and the new listeners bound fresh, the removed ones closed with the old Envoy,
and no request on the persisting listener may fail.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from podharness import netns
from podharness.load import LoadConfig, LoadGenerator
from podharness.pod import Pod
from podharness.sidecar import SidecarImage, SidecarPod, make_image
from tests.integration.agent.checks import assert_hitless, assert_serving

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

LEGACY_PORT = 15004
EXTRA_PORT = 15003
MOVED_TCP_PORT = 15012

LEGACY_LISTENER = f"""  - name: legacy
    address:
      socket_address: {{ address: 0.0.0.0, port_value: {LEGACY_PORT} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: legacy
          cluster: app_tcp
"""
EXTRA_LISTENER = LEGACY_LISTENER.replace("legacy", "extra").replace(str(LEGACY_PORT), str(EXTRA_PORT))


def listen_inodes(pid: int, port: int) -> set[int]:
    """Inodes of the sockets listening on `port` in the network namespace of `pid` (IPv4 and IPv6)."""
    inodes: set[int] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    """Inodes of every socket process `pid` holds open."""
    held: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            held.add(int(target[len("socket:[") : -1]))
    return held


def images(root: Path) -> tuple[SidecarImage, SidecarImage]:
    default = DEFAULT_TEMPLATE.read_text()
    anchor = "  clusters:\n"
    tcp_address = "address: 0.0.0.0, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}"
    assert default.count(anchor) == 1 and default.count(tcp_address) == 1
    old = default.replace(anchor, LEGACY_LISTENER + anchor)
    new = (
        default.replace(anchor, EXTRA_LISTENER + anchor)
        .replace(tcp_address, f"address: 0.0.0.0, port_value: {MOVED_TCP_PORT}")
        .replace("route: { cluster: app }", "route: { cluster: app_v2 }")
        .replace("- name: app\n", "- name: app_v2\n")
        .replace("cluster_name: app\n", "cluster_name: app_v2\n")
        .replace(
            "              routes:\n",
            "              response_headers_to_add:\n"
            "              - header: { key: x-hotupgrade-config, value: v2 }\n"
            "              routes:\n",
        )
    )
    assert new.count("app_v2") == 4 and "x-hotupgrade-config" in new  # vhost, route, cluster
    made = []
    for name, text in (("old", old), ("new", new)):
        template = root / f"envoy-{name}.yaml.tmpl"
        template.write_text(text)
        made.append(make_image(root, f"sidecar:{name}", env={contract.ENV_BOOTSTRAP_TEMPLATE: str(template)}))
    return made[0], made[1]


def get(pod: Pod, port: int) -> tuple[int, str | None]:
    conn = http.client.HTTPConnection(pod.ip, port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("x-hotupgrade-config")
    finally:
        conn.close()


def echo(pod: Pod, port: int) -> bytes:
    with netns.connect(pod.netns, pod.ip, port, timeout=5) as sock:
        sock.sendall(b"ping\n")
        return sock.recv(16)


def test_listeners_in_both_configurations_are_handed_over_the_others_bound_or_closed(pod: Pod) -> None:
    old_image, new_image = images(pod.base)
    sidecars = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=3)
    sidecars.start_pod(old_image)
    old_envoy = sidecars.envoy_pids("a")[0]
    http_sockets = listen_inodes(old_envoy, contract.LISTEN_PORT)
    tcp_sockets = listen_inodes(old_envoy, contract.TCP_LISTEN_PORT)
    assert http_sockets and http_sockets <= socket_inodes(old_envoy)
    assert listen_inodes(old_envoy, LEGACY_PORT) and tcp_sockets
    assert get(pod, contract.LISTEN_PORT) == (200, None)

    load = LoadGenerator(
        LoadConfig(
            host=pod.ip, http_port=contract.LISTEN_PORT, tcp_port=contract.TCP_LISTEN_PORT, tcp_connections=0
        )
    ).start()
    try:
        sidecars.upgrade("b", new_image)  # returns once the old Envoy exited and a runs the empty image
        new_envoy = sidecars.envoy_pids("b")[0]
        assert_serving(sidecars, "b", 1)
        assert listen_inodes(new_envoy, contract.LISTEN_PORT) == http_sockets, "the same sockets, handed over"
        assert http_sockets <= socket_inodes(new_envoy)
        moved = listen_inodes(new_envoy, MOVED_TCP_PORT)
        extra = listen_inodes(new_envoy, EXTRA_PORT)
        assert moved and extra and not (moved | extra) & (http_sockets | tcp_sockets)
        assert (moved | extra) <= socket_inodes(new_envoy), "bound fresh by the new Envoy"
        assert listen_inodes(new_envoy, LEGACY_PORT) == set(), (
            "the removed listener closed with the old Envoy"
        )
        assert listen_inodes(new_envoy, contract.TCP_LISTEN_PORT) == set(), (
            "the moved listener's old port too"
        )
        assert get(pod, contract.LISTEN_PORT) == (200, "v2"), "the new configuration serves"
        assert echo(pod, EXTRA_PORT) == b"ping\n"
        assert echo(pod, MOVED_TCP_PORT) == b"ping\n"
        with pytest.raises(OSError):
            netns.connect(pod.netns, pod.ip, LEGACY_PORT, timeout=2).close()
    finally:
        summary = load.stop()
    print(summary)
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=1)
