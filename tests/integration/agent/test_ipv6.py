"""IPv6 and dual-stack listeners (issue 12, scenario 10): the hand-over on `[::]` as on `0.0.0.0`.

The image's bootstrap puts the HTTP listener on `[::]` with `ipv4_compat` (one dual-stack socket that
IPv4 clients reach as IPv4-mapped addresses) and the tcp_proxy listener on `[::]` alone (IPv6 only).
The harness pod has an IPv6 address on its veth besides the IPv4 one. Two upgrades under load over
both families: the listen sockets are handed over (same inodes) and no request fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from podharness import netns
from podharness.load import LoadConfig, LoadGenerator
from podharness.pod import Pod
from podharness.sidecar import SidecarImage, SidecarPod, make_image
from tests.integration.agent.checks import assert_hitless, assert_serving
from tests.integration.agent.test_config_change import listen_inodes, socket_inodes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HTTP_ANY4 = "address: 0.0.0.0, port_value: ${HOTUPGRADE_LISTEN_PORT}"
TCP_ANY4 = "address: 0.0.0.0, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}"


def dual_stack_image(root: Path) -> SidecarImage:
    template = DEFAULT_TEMPLATE.read_text()
    assert template.count(HTTP_ANY4) == 1 and template.count(TCP_ANY4) == 1
    text = template.replace(
        HTTP_ANY4, 'address: "::", port_value: ${HOTUPGRADE_LISTEN_PORT}, ipv4_compat: true'
    ).replace(TCP_ANY4, 'address: "::", port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}')
    path = root / "envoy-dual-stack.yaml.tmpl"
    path.write_text(text)
    return make_image(root, "sidecar:dual-stack", env={contract.ENV_BOOTSTRAP_TEMPLATE: str(path)})


def inodes6(pid: int, port: int) -> set[int]:
    """Inodes of the IPv6 sockets listening on `port` in the network namespace of `pid`."""
    found: set[int] = set()
    for line in Path(f"/proc/{pid}/net/tcp6").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(int(fields[9]))
    return found


def test_hand_over_on_ipv6_and_dual_stack_listeners(pod: Pod) -> None:
    if not pod.ip6:
        pytest.fail("the harness pod has no IPv6 address: the kernel has IPv6 disabled")
    image = dual_stack_image(pod.base)
    sidecars = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=3)
    sidecars.start_pod(image)
    envoy = sidecars.envoy_pids("a")[0]
    http = listen_inodes(envoy, contract.LISTEN_PORT)
    tcp = listen_inodes(envoy, contract.TCP_LISTEN_PORT)
    assert http and http == inodes6(envoy, contract.LISTEN_PORT), "one family: IPv6 sockets only"
    assert tcp and tcp == inodes6(envoy, contract.TCP_LISTEN_PORT)
    with pytest.raises(OSError):  # the tcp_proxy listener is IPv6 only
        netns.connect(pod.netns, pod.ip, contract.TCP_LISTEN_PORT, timeout=2).close()

    families = (("ipv4", pod.ip, 0), ("ipv6", pod.ip6, 2))  # the tcp_proxy listener is IPv6 only
    loads = {
        family: LoadGenerator(
            LoadConfig(
                host=host,
                http_port=contract.LISTEN_PORT,
                tcp_port=contract.TCP_LISTEN_PORT,
                tcp_connections=tcp,
            )
        ).start()
        for family, host, tcp in families
    }
    try:
        for epoch, slot in enumerate(("b", "a"), start=1):
            sidecars.upgrade(slot, image)
            assert_serving(sidecars, slot, epoch)
            envoy = sidecars.envoy_pids(slot)[0]
            assert listen_inodes(envoy, contract.LISTEN_PORT) == http, "the [::] sockets were handed over"
            assert listen_inodes(envoy, contract.TCP_LISTEN_PORT) == tcp
            assert (http | tcp) <= socket_inodes(envoy)
    finally:
        summaries = {family: load.stop() for family, load in loads.items()}
    for family, summary in summaries.items():
        print(family, summary)
        assert summary["requests"] > 100, family
        assert summary["failed"] == 0, (family, summary["failures"])
    for load in loads.values():
        assert_hitless(load, upgrades=2)
    assert summaries["ipv6"]["tcp_echoes"] > 0
