"""`hotupgrade` (the installed console script) against a real kube-apiserver, with the controller
running in-process on the same API server: the direct rollout (`rollout --direct`, by annotation) and the
per-pod commands. The SidecarRelease commands: test_release_cli_apiserver.py.

Kubelet and agents are simulated (fakes.py): these tests are about what the CLI writes and reports.
"""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from controller.cli.podinfo import pod_info
from controller.disruption import out_of_service
from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.main import Controller
from controller.record import Phase, Reason
from controller.rollout import pod_facts
from tests.integration.controller.fakes import BROKEN, EMPTY, NEW, OLD, KubeletSim, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOTUPGRADE = str(Path(sys.executable).parent / "hotupgrade")


def hotupgrade(kubeconfig: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOTUPGRADE, "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def infos(kube: Kube, namespace: str) -> dict[str, Any]:
    pods, _ = kube.list_pods(namespace)
    return {p["metadata"]["name"]: pod_info(p) for p in pods}


def test_rollout_in_batches_then_status_then_rollback(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim, controller: Controller
) -> None:
    for index in range(4):
        sim.add_pod(f"web-{index}")
    sim.add_pod("other-0", labels={"app": "other"})
    peak = [0]
    sampling = threading.Event()

    def sample() -> None:
        # What --max-unavailable bounds: pods out of service (not Ready, or an upgrade queued or in flight).
        while not sampling.wait(0.1):
            pods, _ = kube.list_pods(namespace, label_selector="app=web")
            busy = sum(1 for p in pods if out_of_service(pod_facts(p)))
            peak[0] = max(peak[0], busy)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = hotupgrade(
        kubeconfig, "rollout", "--direct", "-n", namespace, "-l", "app=web", "--image", NEW,
        "--max-unavailable", "2",
        "--poll-interval", "0.3",
    )  # fmt: skip
    sampling.set()
    sampler.join(timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"rollout of {NEW} to 4 pod(s), at most 2 unavailable at once, stop after 1 failure(s)" in (
        result.stdout
    )
    assert "progress: " in result.stdout, "not a TTY: progress as lines"
    summary = [line.split() for line in result.stdout.splitlines() if line.startswith("web-")]
    assert sorted(row[0] for row in summary) == [f"web-{i}" for i in range(4)]
    assert all(row[1] == "completed" and row[2] == "Completed" for row in summary), result.stdout
    assert 1 <= peak[0] <= 2, f"at most --max-unavailable pods out of service at once, saw {peak[0]}"
    pods = infos(kube, namespace)
    assert pods["other-0"].target is None and pods["other-0"].status.sidecar_image == OLD

    status = hotupgrade(kubeconfig, "status", "-n", namespace, "-l", "app=web")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0].split() == [
        "POD",
        "READY",
        "ACTIVE",
        "SLOT",
        "IMAGE",
        "TARGET",
        "EPOCH",
        "PHASE",
        "MESSAGE",
    ]
    for line in lines[1:]:
        cells = line.split()
        assert cells[1:9] == ["yes", "hotupgrade-b", "b", NEW, NEW, "1", "Completed", "#1"], line

    back = hotupgrade(kubeconfig, "rollback", "-n", namespace, "web-0")
    assert back.returncode == 0 and f"upgrade back to {OLD} requested" in back.stdout, back.stdout
    wait_until(
        lambda: (
            (p := infos(kube, namespace)["web-0"]).status.sidecar_image == OLD
            and p.record.phase is Phase.COMPLETED
        ),
        timeout=60,
        what="web-0 back on the old image",
    )
    pod = infos(kube, namespace)["web-0"]
    assert pod.status.active == "hotupgrade-a" and sim.agents["web-0"].epoch == 2


def test_abort_rolls_back_an_upgrade_in_flight(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim, controller: Controller
) -> None:
    sim.add_pod("web-0").stall_take_over = True
    kube.merge_patch_pod(namespace, "web-0", {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}})
    wait_until(
        lambda: (r := infos(kube, namespace)["web-0"].record) is not None and r.phase is Phase.TAKING_OVER,
        timeout=30,
        what="TakingOver",
    )
    result = hotupgrade(kubeconfig, "abort", "-n", namespace, "-l", "app=web")
    assert result.returncode == 0 and "abort requested" in result.stdout, result.stdout
    pod = wait_until(
        lambda: (p := infos(kube, namespace)["web-0"]).record.phase is Phase.FAILED and p,
        timeout=30,
        what="Failed after abort",
    )
    assert pod.record.reason is Reason.ABORTED and pod.status.active == "hotupgrade-a"
    raw = kube.get_pod(namespace, "web-0")
    assert raw is not None and raw["spec"]["containers"][1]["image"] == EMPTY
    again = hotupgrade(kubeconfig, "abort", "-n", namespace, "web-0", "web-missing")
    assert again.returncode == 1 and "nothing in flight" in again.stdout and "not found" in again.stdout


def test_retry_after_a_failed_upgrade(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim, controller: Controller
) -> None:
    sim.add_pod("web-0")
    failed = hotupgrade(
        kubeconfig, "rollout", "--direct", "-n", namespace, "--image", BROKEN, "--poll-interval", "0.3"
    )
    assert failed.returncode == 1 and "failed" in failed.stdout, failed.stdout
    sim.broken.clear()
    retried = hotupgrade(kubeconfig, "retry", "-n", namespace, "web-0")
    assert retried.returncode == 0 and f"retry of {BROKEN} requested" in retried.stdout
    pod = wait_until(
        lambda: (p := infos(kube, namespace)["web-0"]).record.phase is Phase.COMPLETED and p,
        timeout=60,
        what="Completed after retry",
    )
    assert pod.record.attempt == 2


def test_ctrl_c_stops_cleanly_and_reports_what_was_started(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim, controller: Controller
) -> None:
    for index in range(3):
        sim.add_pod(f"web-{index}").stall_take_over = True
    proc = subprocess.Popen(
        [
            HOTUPGRADE,
            "--kubeconfig",
            kubeconfig,
            "rollout",
            "--direct",
            "-n",
            namespace,
            "--image",
            NEW,
            "--poll-interval",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until(
            lambda: (
                (r := infos(kube, namespace)["web-0"].record) is not None and r.phase is Phase.TAKING_OVER
            ),
            timeout=30,
            what="web-0 upgrading",
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("web-")}
    assert "in progress" in rows["web-0"]
    assert "not started" in rows["web-1"] and "not started" in rows["web-2"]
    assert "interrupted" in out and "stopping after the current API call" in err
    pods = infos(kube, namespace)
    assert pods["web-0"].target == NEW, "what was started is recorded on the pod"
    assert pods["web-1"].target is None and pods["web-2"].target is None, "nothing beyond it was touched"
