"""A leader stopped by SIGTERM while a worker is inside a reconcile (a real `hotupgrade-controller` process
against a real kube-apiserver): it keeps the Lease until that reconcile has ended, then releases it; and
when the reconcile outlasts what its last renewal covers, it exits without releasing.

The worker is held for real: the pod's agent (fakes.FakeAgents, on the pod's own loopback address and the
contract's status ports) answers the upgrade's first `/status` slowly, so the worker sits in its HTTP call.
"""

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.leader import lease_view
from tests.integration.controller.fakes import (
    NEW,
    FakeAgents,
    KubeletSim,
    fresh_loopback_ip,
    pod_manifest,
    wait_until,
)
from tests.integration.controller.test_controller_process import LEASE, ControllerProcess, holder

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

AGENT_TIMEOUT = 2.0  # controller.agents.AgentClient's connect and read timeout (its default)


class SlowAgents(FakeAgents):
    """FakeAgents whose `/status` runs `hold(slot)` before answering (in the server's handler thread)."""

    def __init__(self, ip: str, hold: Callable[[str], None]) -> None:
        self.hold = hold
        super().__init__(ip)

    def document(self, slot: str) -> dict[str, Any] | None:
        self.hold(slot)
        return super().document(slot)


@pytest.fixture
def spawn(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[Callable[..., ControllerProcess]]:
    """Start a controller process with the given identity and lease settings; killed at teardown."""
    started: list[ControllerProcess] = []

    def start(identity: str, *, duration: int, deadline: float, retry: float) -> ControllerProcess:
        lease = ["--lease-duration", str(duration), "--renew-deadline", str(deadline)]
        process = ControllerProcess(
            kubeconfig,
            namespace,
            identity,
            tmp_path / f"{identity}.log",
            extra=[*lease, "--retry-period", str(retry)],
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def add_pod(kube: Kube, namespace: str, sim: KubeletSim, name: str, agents: FakeAgents) -> None:
    """An injected, Ready pod whose podIP is `agents`' address (the simulated kubelet wrote its status)."""
    kube.create_pod(namespace, pod_manifest(name))
    sim.agents[name] = agents
    sim.sync(name)


def start_upgrade(kube: Kube, namespace: str, name: str) -> None:
    kube.merge_patch_pod(namespace, name, {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}})


def test_sigterm_keeps_the_lease_until_the_reconcile_in_flight_has_ended(
    kube: Kube, namespace: str, sim: KubeletSim, spawn: Callable[..., ControllerProcess]
) -> None:
    entered, signalled = threading.Event(), threading.Event()
    seen: list[str | None] = []  # the Lease's holder, sampled while the worker waits for our answer
    answered: list[float] = []

    def hold(slot: str) -> None:
        if slot != "a" or entered.is_set():
            return
        entered.set()
        signalled.wait(timeout=AGENT_TIMEOUT / 2)
        until = time.monotonic() + AGENT_TIMEOUT / 2  # answered within the client's read timeout
        while time.monotonic() < until:
            seen.append(holder(kube, namespace))
            time.sleep(0.05)
        answered.append(time.monotonic())

    add_pod(kube, namespace, sim, "web-0", SlowAgents(fresh_loopback_ip(), hold))
    # Budget: min(renew deadline 6, duration 8 - retry 0.5) less at most 0.5 since the last renewal.
    leader = spawn("ctl-busy", duration=8, deadline=6, retry=0.5)
    wait_until(lambda: holder(kube, namespace) == "ctl-busy", timeout=30, what="leader")
    start_upgrade(kube, namespace, "web-0")
    assert entered.wait(timeout=30), f"no /status call from the worker (log: {leader.logs()})"
    leader.proc.send_signal(signal.SIGTERM)
    signalled.set()
    wait_until(lambda: answered, timeout=10, what="the agent's answer")
    assert len(seen) >= 3 and set(seen) == {"ctl-busy"}, f"held while the worker was in its call: {seen}"
    assert leader.proc.wait(timeout=30) == 0, leader.logs()
    lease = lease_view(kube.get_lease(namespace, LEASE) or {})
    assert (lease.holder, lease.duration_seconds) == (None, 1), "released (controller.leader.release)"
    assert '"event":"lease_released"' in leader.logs()
    assert '"event":"lease_not_released"' not in leader.logs()


def test_a_reconcile_past_the_budget_keeps_the_lease_until_it_expires(
    kube: Kube, namespace: str, sim: KubeletSim, spawn: Callable[..., ControllerProcess]
) -> None:
    entered, done = threading.Event(), threading.Event()

    def hold(slot: str) -> None:
        entered.set()
        done.wait(timeout=AGENT_TIMEOUT * 2)  # past the client's read timeout, both slots: >= 4 s busy

    agents = SlowAgents(fresh_loopback_ip(), hold)
    add_pod(kube, namespace, sim, "web-0", agents)
    # Budget: min(renew deadline 2, duration 5 - retry 0.3) less up to 0.3 s since the last renewal.
    leader = spawn("ctl-stuck", duration=5, deadline=2, retry=0.3)
    try:
        wait_until(lambda: holder(kube, namespace) == "ctl-stuck", timeout=30, what="leader")
        start_upgrade(kube, namespace, "web-0")
        assert entered.wait(timeout=30), f"no /status call from the worker (log: {leader.logs()})"
        leader.proc.send_signal(signal.SIGTERM)
        assert leader.proc.wait(timeout=30) == 0, leader.logs()
        lease = lease_view(kube.get_lease(namespace, LEASE) or {})
    finally:
        done.set()
    assert (lease.holder, lease.duration_seconds) == ("ctl-stuck", 5), "left to expire, not released"
    log = leader.logs()
    assert '"event":"lease_not_released"' in log and '"busy":"worker-' in log, log
    assert '"event":"lease_released"' not in log
