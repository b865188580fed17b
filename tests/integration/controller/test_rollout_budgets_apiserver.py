"""`hotupgrade rollout --direct` against a real kube-apiserver with the controller in-process (issue 12,
scenarios 7 and 8): PodDisruptionBudgets and pods already out of service hold a rollout back, a failing
image stops it after --max-failures, and re-running it once the image is fixed resumes where it stopped.

Kubelet and agents are simulated (fakes.py), as in test_cli_apiserver.py. A sampler reads the pods every
0.1 s throughout and counts those out of service the way the budgets do (controller.disruption).
"""

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from controller.cli.podinfo import pod_info
from controller.disruption import out_of_service
from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.record import Phase, Reason
from controller.rollout import pod_facts
from tests.integration.controller.fakes import (
    BROKEN,
    NEW,
    FakeAgents,
    KubeletSim,
    pod_manifest,
    wait_until,
)
from tests.integration.controller.test_cli_apiserver import HOTUPGRADE, hotupgrade, infos

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


class Sampler:
    """Peak number of `app=web` pods out of service (not Ready, or an upgrade queued or in flight)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.peak = 0
        self.samples = 0
        self.done = threading.Event()
        self.errors: list[BaseException] = []

        def run() -> None:
            while not self.done.wait(0.1):
                try:
                    pods, _ = kube.list_pods(namespace, label_selector="app=web")
                except Exception as exc:  # reported by the test
                    self.errors.append(exc)
                    continue
                self.samples += 1
                self.peak = max(self.peak, sum(1 for p in pods if out_of_service(pod_facts(p))))

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> int:
        self.done.set()
        self.thread.join(timeout=10)
        assert self.errors == [] and self.samples > 10, (self.errors, self.samples)
        return self.peak


class RunningCLI:
    """`hotupgrade ...` in the background; its stdout collected line by line as it comes."""

    def __init__(self, kubeconfig: str, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [HOTUPGRADE, "--kubeconfig", kubeconfig, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, *, timeout: float) -> str:
        return str(
            wait_until(
                lambda: next((line for line in self.lines if text in line), None),
                timeout=timeout,
                what=f"CLI output {text!r} (so far: {self.lines[-3:]})",
            )
        )

    def finish(self, *, timeout: float) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None and self.proc.stdout is not None
        stderr = self.proc.stderr.read()
        self.close()
        return code, "\n".join(self.lines) + "\n" + stderr

    def close(self) -> None:
        """Kill the process if it still runs, and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.reader.join(timeout=10)  # at EOF once the process is gone; then the pipe may close
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def create_pdb(kube: Kube, namespace: str, spec: dict[str, Any]) -> None:
    body = {"metadata": {"name": "web-pdb"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}
    policy: Any = kube.policy  # a raw dict body; the typed client wants a model
    policy.create_namespaced_pod_disruption_budget(namespace, body, _preload_content=False)


Launch = Callable[..., tuple[Sampler, RunningCLI]]


@pytest.fixture
def under_pdb(kube: Kube, kubeconfig: str, namespace: str) -> Iterator[Launch]:
    """Start(pdb=, selector=, max_unavailable=): create the PDB `web-pdb` over app=web, start sampling,
    start the rollout to NEW in the background; whatever is still running is killed afterwards."""
    runs: list[RunningCLI] = []

    def start(*, pdb: dict[str, Any], selector: str, max_unavailable: int) -> tuple[Sampler, RunningCLI]:
        create_pdb(kube, namespace, pdb)
        sampler = Sampler(kube, namespace)
        run = RunningCLI(
            kubeconfig, "rollout", "--direct", "-n", namespace, "-l", selector, "--image", NEW,
            "--max-unavailable", str(max_unavailable), "--poll-interval", "0.3",
        )  # fmt: skip
        runs.append(run)
        return sampler, run

    yield start
    for run in runs:
        run.close()


def summary(output: str) -> dict[str, list[str]]:
    """The final table's rows by pod name (the row after the POD RESULT PHASE MESSAGE header)."""
    lines = output.splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("POD "))
    return {line.split()[0]: line.split() for line in lines[header + 1 :] if line.startswith("web-")}


def finish_take_over(agents: FakeAgents) -> None:
    """Let a stalled hand-over go through, as its agent would once the new Envoy is up."""
    with agents.lock:
        old = agents.active
        new = agents._other(old)
        agents.active, agents.epoch = new, agents.epoch + 1
        agents.phases[new], agents.phases[old] = "serving", "draining"
        agents.drain_until = time.monotonic() + agents.drain_seconds
        agents.stall_take_over = False


@pytest.mark.usefixtures("controller")
def test_a_pdb_holds_a_rollout_while_a_pod_outside_the_selection_is_not_ready(
    kube: Kube, namespace: str, sim: KubeletSim, under_pdb: Launch
) -> None:
    """minAvailable 3 over four pods, one of them (a canary the rollout does not select) NotReady:
    --max-unavailable 3 would start all three selected pods; the PDB allows none until the canary is
    Ready, then one at a time."""
    for index in range(3):
        sim.add_pod(f"web-{index}", labels={"app": "web", "track": "stable"})
    # Created without the simulated kubelet: no status is written, so the canary stays NotReady.
    kube.create_pod(namespace, pod_manifest("web-canary", labels={"app": "web", "track": "canary"}))
    sampler, run = under_pdb(pdb={"minAvailable": 3}, selector="track=stable", max_unavailable=3)
    run.wait_for("PodDisruptionBudget web-pdb (minAvailable 3) covers 3 of them", timeout=60)
    blocked = run.wait_for(
        "waiting: PodDisruptionBudget web-pdb (minAvailable 3): 3 of 4 pod(s) healthy, 3 must stay "
        "healthy: 0 more may go out of service",
        timeout=60,
    )
    assert blocked.startswith("progress: [")
    time.sleep(3)  # ten rounds of the CLI: none may start a pod
    assert all(p.target is None for p in infos(kube, namespace).values()), "nothing started while blocked"
    assert sampler.peak == 1, "only the canary is out of service"

    kube.core.patch_namespaced_pod_status(
        "web-canary",
        namespace,
        {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        _content_type="application/merge-patch+json",
        _preload_content=False,
    )
    code, output = run.finish(timeout=240)
    peak = sampler.stop()
    assert code == 0, output
    rows = summary(output)
    assert sorted(rows) == ["web-0", "web-1", "web-2"]
    assert all(row[1] == "completed" for row in rows.values()), output
    assert peak == 1, f"the PDB allows one pod out of service at a time, saw {peak}"
    assert infos(kube, namespace)["web-canary"].target is None


@pytest.mark.usefixtures("controller")
def test_a_hand_set_upgrade_uses_the_budget_a_rollout_respects(
    kube: Kube, namespace: str, sim: KubeletSim, under_pdb: Launch
) -> None:
    """minAvailable 2 of three pods, one already upgrading by its own annotation (stalled before the
    take-over, so still Ready): the rollout starts nothing until it finishes, then one at a time.
    (An integer minAvailable: the test's pods have no controller, and for those the disruption
    controller expects no pods under maxUnavailable, which allows no disruption at all.)"""
    for index in range(3):
        sim.add_pod(f"web-{index}")
    stalled = sim.agents["web-2"]
    stalled.stall_take_over = True
    kube.merge_patch_pod(namespace, "web-2", {"metadata": {"annotations": {ANNOTATION_TARGET_IMAGE: NEW}}})
    wait_until(
        lambda: (r := infos(kube, namespace)["web-2"].record) is not None and r.phase is Phase.TAKING_OVER,
        timeout=60,
        what="web-2 taking over",
    )
    sampler, run = under_pdb(pdb={"minAvailable": 2}, selector="app=web", max_unavailable=2)
    run.wait_for(f"rollout of {NEW} to 3 pod(s), at most 2 unavailable at once", timeout=60)
    run.wait_for(
        "waiting: PodDisruptionBudget web-pdb (minAvailable 2): 2 of 3 pod(s) healthy, 2 must stay "
        "healthy, 1 Ready pod(s) upgrading count as out of service: 0 more may go out of service",
        timeout=60,
    )
    time.sleep(3)
    pods = infos(kube, namespace)
    assert pods["web-0"].target is None and pods["web-1"].target is None, "the PDB had no room"

    finish_take_over(stalled)
    code, output = run.finish(timeout=240)
    peak = sampler.stop()
    assert code == 0, output
    assert all(row[1] == "completed" for row in summary(output).values()), output
    assert len(summary(output)) == 3
    assert peak == 1, f"minAvailable 2 of 3 allows one pod out of service at a time, saw {peak}"


@pytest.mark.usefixtures("controller")
def test_a_failing_image_stops_after_one_failure_and_a_rerun_resumes_once_fixed(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim
) -> None:
    for index in range(4):
        sim.add_pod(f"web-{index}")
    args = ("rollout", "--direct", "-n", namespace, "--image", BROKEN, "--poll-interval", "0.3")
    broken = hotupgrade(kubeconfig, *args)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"rollout of {BROKEN} to 4 pod(s), at most 1 unavailable at once, stop after 1 failure(s)" in (
        broken.stdout
    )
    rows = summary(broken.stdout)
    assert rows["web-0"][1:3] == ["failed", "Failed"], broken.stdout
    assert all(rows[f"web-{i}"][1:3] == ["not", "started"] for i in (1, 2, 3)), broken.stdout
    assert "why they failed" in broken.stdout and "ErrImagePull" in broken.stdout
    assert "stopped: 1 upgrade(s) failed (web-0), --max-failures is 1" in broken.stdout
    pods = infos(kube, namespace)
    assert pods["web-0"].record.reason is Reason.IMAGE_PULL_FAILED
    assert [pods[f"web-{i}"].target for i in (1, 2, 3)] == [None, None, None], "blast radius: one pod"

    sim.broken.clear()  # the tag now names a working image
    resumed = hotupgrade(kubeconfig, *args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"rollout of {BROKEN} to 4 pod(s)" in resumed.stdout
    assert all(row[1] == "completed" for row in summary(resumed.stdout).values()), resumed.stdout
    pods = infos(kube, namespace)
    assert pods["web-0"].record.attempt == 2, "the failed pod was retried, not skipped"
    assert all(p.status.sidecar_image == BROKEN for p in pods.values())

    again = hotupgrade(kubeconfig, *args)
    assert again.returncode == 0, again.stdout
    assert (
        f"rollout of {BROKEN} to 0 pod(s)" in again.stdout and again.stdout.count("already on the image") == 4
    )


@pytest.mark.usefixtures("controller")
def test_max_failures_zero_tries_every_pod_and_reports_each_failure(
    kube: Kube, kubeconfig: str, namespace: str, sim: KubeletSim
) -> None:
    pods = ["web-0", "web-1", "web-2"]
    for name in pods:
        sim.add_pod(name)
    result = hotupgrade(
        kubeconfig, "rollout", "--direct", "-n", namespace, "--image", BROKEN, "--max-failures", "0",
        "--max-unavailable", "3", "--poll-interval", "0.3",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "never stop for failures" in result.stdout and "stopped:" not in result.stdout
    rows = summary(result.stdout)
    assert all(row[1] == "failed" for row in rows.values()) and len(rows) == 3, result.stdout
    assert sum(1 for line in result.stdout.splitlines() if "ErrImagePull" in line) >= 3
    assert all(pod_info(kube.get_pod(namespace, name) or {}).record is not None for name in pods)
