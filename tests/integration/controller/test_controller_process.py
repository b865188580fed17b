"""The controller as a real process (watch, work queue, leader election) against a real kube-apiserver:
killed mid-upgrade it resumes from the record; robbed of its lease it exits.

Kubelet and agents are simulated (fakes.py), as these tests are about the controller's process shell.
"""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.keys import ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE
from controller.kube import Kube
from controller.leader import lease_view, micro_time
from controller.main import EXIT_LEASE_LOST
from controller.record import Phase, UpgradeRecord, parse_record
from tests.integration.controller.fakes import NEW, Background, KubeletSim, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LEASE = "hotupgrade-controller"
# The console script the chart runs: `hotupgrade-controller ARGS` -> controller.main:main.
CONTROLLER_CLI = str(Path(sys.executable).parent / "hotupgrade-controller")


class ControllerProcess:
    def __init__(
        self, kubeconfig: str, namespace: str, identity: str, log: Path, *, extra: Sequence[str] = ()
    ) -> None:
        """`extra`: more arguments, after the defaults below (a repeated option overrides its default)."""
        self.log = log
        args = [
            "--kubeconfig", kubeconfig,
            "--namespace", namespace,
            "--lease-namespace", namespace,
            "--lease-name", LEASE,
            "--identity", identity,
            "--lease-duration", "3",
            "--renew-deadline", "2",
            "--retry-period", "0.3",
            "--step-timeout", "30",
            "--poll-interval", "0.3",
            "--metrics-port", "0",
        ]  # fmt: skip
        self.stream = log.open("ab")
        self.proc = subprocess.Popen(
            [CONTROLLER_CLI, *args, *extra], stdout=self.stream, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.stream.close()


Spawn = Callable[[str], ControllerProcess]


@pytest.fixture
def spawn(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[Spawn]:
    """Start a controller process with the given identity; all are killed at teardown."""
    started: list[ControllerProcess] = []

    def start(identity: str) -> ControllerProcess:
        process = ControllerProcess(kubeconfig, namespace, identity, tmp_path / f"{identity}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def record(kube: Kube, namespace: str, name: str) -> UpgradeRecord | None:
    pod = kube.get_pod(namespace, name)
    raw = ((pod or {}).get("metadata") or {}).get("annotations", {}).get(ANNOTATION_UPGRADE)
    return parse_record(raw) if raw else None


def holder(kube: Kube, namespace: str) -> str | None:
    lease = kube.get_lease(namespace, LEASE)
    return lease_view(lease).holder if lease else None


def test_killed_mid_upgrade_the_next_controller_resumes(
    kube: Kube, namespace: str, sim: KubeletSim, spawn: Spawn
) -> None:
    sim.add_pod("web-0", drain_seconds=6)
    kubelet = Background(sim.sync_all)
    try:
        first = spawn("ctl-one")
        wait_until(lambda: holder(kube, namespace) == "ctl-one", timeout=30, what="first leader")
        kube.merge_patch_pod(
            namespace, "web-0", {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}}
        )
        draining = wait_until(
            lambda: (r := record(kube, namespace, "web-0")) is not None and r.phase is Phase.DRAINING and r,
            timeout=60,
            what="phase Draining",
        )
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        second = spawn("ctl-two")
        done = wait_until(
            lambda: (r := record(kube, namespace, "web-0")) is not None and r.phase is Phase.COMPLETED and r,
            timeout=90,
            what=f"phase Completed (controller log: {second.logs()})",
        )
    finally:
        kubelet.close()
    assert kubelet.errors == []
    assert holder(kube, namespace) == "ctl-two"
    assert (done.attempt, done.started) == (1, draining.started), "resumed, not restarted"
    reasons = [e["reason"] for e in kube.list_events(namespace, "web-0") if e["reason"] != "FailedScheduling"]
    assert reasons.count("UpgradeStarted") == 1 and reasons.count("UpgradeCompleted") == 1, reasons
    assert sim.agents["web-0"].epoch == 1, "exactly one hand-over happened"
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=30) == 0
    assert holder(kube, namespace) is None, "a clean shutdown releases the lease"


def test_losing_the_lease_exits_the_process(kube: Kube, namespace: str, spawn: Spawn) -> None:
    leader = spawn("ctl-victim")
    wait_until(lambda: holder(kube, namespace) == "ctl-victim", timeout=30, what="leader")
    lease: dict[str, Any] | None = kube.get_lease(namespace, LEASE)
    assert lease is not None
    lease["spec"].update(
        holderIdentity="thief", renewTime=micro_time(datetime.now(UTC)), leaseDurationSeconds=60
    )
    kube.replace_lease(namespace, LEASE, lease)
    assert leader.proc.wait(timeout=30) == EXIT_LEASE_LOST, leader.logs()
    assert '"event":"lease_lost"' in leader.logs()


def test_follower_does_not_act_while_another_replica_leads(
    kube: Kube, namespace: str, sim: KubeletSim, spawn: Spawn
) -> None:
    sim.add_pod("web-0")
    now = micro_time(datetime.now(UTC))
    kube.create_lease(
        namespace,
        {
            "metadata": {"name": LEASE, "namespace": namespace},
            "spec": {
                "holderIdentity": "elsewhere",
                "leaseDurationSeconds": 3600,
                "renewTime": now,
                "acquireTime": now,
            },
        },
    )
    follower = spawn("ctl-follower")
    wait_until(lambda: "lease_waiting" in follower.logs(), timeout=30, what="follower started")
    kube.merge_patch_pod(namespace, "web-0", {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}})
    with pytest.raises(AssertionError, match="timed out"):
        wait_until(lambda: record(kube, namespace, "web-0"), timeout=5, what="a record (must not appear)")
    assert follower.proc.poll() is None
