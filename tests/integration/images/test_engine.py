"""The Docker engine `make e2e-kind` starts leaves the host's firewall and forwarding as it found them.

dockerd with its defaults sets the FORWARD policy to DROP, which silently breaks the local cluster's pod
traffic; ours must write no rule while it runs and leave none when it stops.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localcluster import docker

SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables")


def sysctls() -> dict[str, str]:
    return {
        k: (Path("/proc/sys") / k).read_text().strip() for k in SYSCTLS if (Path("/proc/sys") / k).exists()
    }


def links() -> set[str]:
    """Docker's bridges (docker0, br-<network id>); other work on the host adds and removes veths."""
    return {p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(("docker", "br-"))}


def test_engine_writes_no_rule_and_no_sysctl() -> None:
    if os.geteuid() != 0:
        pytest.skip("starting Debian's Docker engine needs root")
    if docker.answers(os.environ) or docker.answers({**os.environ, **docker.engine_env()}):
        pytest.skip("an engine already runs: this test needs to start and stop its own")
    before, before_sysctls, interfaces = docker.iptables_rules(), sysctls(), links()
    with docker.engine() as engine:
        assert engine.started_here
        info = docker.engine_info(engine.client_env())
        assert info["ServerVersion"]
        # A container on a user-defined bridge, as kind's nodes are: still no rule.
        network = "hotupgrade-engine-test"
        docker.run_client(engine.client_env(), "network", "create", network)
        assert docker.iptables_rules() == before
        assert sysctls() == before_sysctls
    assert docker.iptables_rules() == before
    assert sysctls() == before_sysctls
    assert not docker.SOCKET.exists()
    assert links() == interfaces  # no docker0, no bridge of the user-defined network
