"""`hotupgrade rollout|pause|resume|rollback|status NAME` (the installed console script) against a real
kube-apiserver with the chart's CRD and a real `hotupgrade-controller` process: the CLI only edits the
SidecarRelease's spec and reads its status, the controller does the rollout.

Kubelet and agents are simulated (fakes.py), as in test_release_apiserver.py. Not a TTY here, so the
progress comes as `progress:` lines.
"""

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.cli import edits, releaseops
from controller.keys import ANNOTATION_SWAP_HOLD
from controller.kube import Kube
from controller.record import Phase
from tests.integration.controller.fakes import NEW, OLD, Background, KubeletSim, wait_until
from tests.integration.controller.releases import delete_release, install_crd, merge_release, unique
from tests.integration.controller.test_cli_apiserver import hotupgrade, infos
from tests.integration.controller.test_controller_process import ControllerProcess
from tests.integration.controller.test_release_apiserver import sidecar_images, targets
from webhook.kubeclient import load_api_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAST = ("--poll-interval", "0.3")


@pytest.fixture(scope="module")
def crd(kubeconfig: str) -> dict[str, Any]:
    return install_crd(Kube(load_api_client(kubeconfig)))


@dataclass(frozen=True)
class Cli:
    """`hotupgrade` on the test's cluster, with a fresh release name (cluster-scoped: deleted after)."""

    kube: Kube
    kubeconfig: str
    namespace: str
    name: str

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return hotupgrade(self.kubeconfig, *args)


@pytest.fixture
def cli(kube: Kube, kubeconfig: str, namespace: str, crd: dict[str, Any]) -> Iterator[Cli]:
    chosen = unique("hu-cli")
    yield Cli(kube, kubeconfig, namespace, chosen)
    delete_release(kube, chosen)


@pytest.fixture
def controller(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[ControllerProcess]:
    """`hotupgrade-controller` as the chart runs it (releases on), scoped to the test namespace."""
    process = ControllerProcess(kubeconfig, namespace, "ctl-cli", tmp_path / "controller.log")
    yield process
    process.stop()


def read(kube: Kube, name: str) -> dict[str, Any]:
    found = kube.get_release(name)
    assert found is not None
    return found


def output(result: Any) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def web_pods(sim: KubeletSim) -> None:
    """web-0..2 (app=web), running OLD, Ready."""
    for index in range(3):
        sim.add_pod(f"web-{index}")


def completes(cli: Cli, controller: ControllerProcess, *args: str, edit: str, image: str) -> None:
    """`hotupgrade ARGS` makes `edit`, follows the release and ends Complete with its 3 pods on `image`."""
    result = cli(*args, *FAST)
    assert result.returncode == 0, output(result) + controller.logs()
    assert f"SidecarRelease {cli.name}: {edit}" in result.stdout
    assert result.stdout.rstrip().endswith(f"{cli.name}: complete (AllPodsUpdated): all 3 pods run {image}")


def test_rollout_to_a_new_image_completes_and_rollback_restores_the_previous(
    cli: Cli, sim: KubeletSim, controller: ControllerProcess
) -> None:
    kube, namespace, name = cli.kube, cli.namespace, cli.name
    web_pods(sim)
    sim.add_pod("other-0", labels={"app": "other"})
    kubelet = Background(sim.sync_all)
    try:
        rolled = cli(
            "rollout", name, "--image", NEW, "-n", namespace, "-l", "app=web",
            "--max-unavailable", "2", *FAST,
        )  # fmt: skip
        assert rolled.returncode == 0, output(rolled) + controller.logs()
        assert f"SidecarRelease {name} created: image {NEW} (generation 1)" in rolled.stdout
        lines = [line for line in rolled.stdout.splitlines() if line.startswith("progress: ")]
        assert any("RollingOut" in line for line in lines), "the command followed the rollout"
        assert rolled.stdout.rstrip().endswith(f"{name}: complete (AllPodsUpdated): all 3 pods run {NEW}")
        spec = read(kube, name)["spec"]
        assert spec["image"] == NEW and spec["strategy"]["maxUnavailable"] == 2
        assert spec["selector"] == {"matchLabels": {"app": "web"}}
        assert spec["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
        images = sidecar_images(kube, namespace)
        assert images == {"web-0": NEW, "web-1": NEW, "web-2": NEW, "other-0": OLD}

        shown = cli("status", name)
        assert shown.returncode == 0, output(shown)
        table = shown.stdout.splitlines()
        assert table[1].split() == [name, NEW, "3", "3", "3", "0", "0", "no", "RolloutComplete"]
        assert f"roll back to (set spec.image): {OLD}" in shown.stdout
        assert sum(1 for line in table if line.split()[1:2] == ["Updated"]) == 3, shown.stdout

        completes(cli, controller, "rollback", name, edit=f"spec.image={OLD} (generation 2)", image=OLD)
    finally:
        kubelet.close()
    assert kubelet.errors == []
    assert read(kube, name)["spec"]["image"] == OLD
    assert sidecar_images(kube, namespace) == {"web-0": OLD, "web-1": OLD, "web-2": OLD, "other-0": OLD}
    assert all(sim.agents[f"web-{i}"].epoch == 2 for i in range(3)), "each pod hot-upgraded there and back"


def pod_annotation(kube: Kube, namespace: str, name: str, key: str) -> str | None:
    pod = kube.get_pod(namespace, name)
    assert pod is not None
    value: str | None = (pod["metadata"].get("annotations") or {}).get(key)
    return value


def test_pause_stops_new_batches_and_resume_goes_on(
    cli: Cli, sim: KubeletSim, controller: ControllerProcess
) -> None:
    kube, namespace, name = cli.kube, cli.namespace, cli.name
    web_pods(sim)
    # The kubelet is held back: web-0's upgrade stays in flight (its new container not started) while
    # the release is paused, then goes on. web-0's swap opened its window (maxUnavailable 1), and web-1
    # was started meanwhile with its swap held (checks and pre-pull only): the pause starts nothing more,
    # but lets both finish (a held pod is lifted, never stranded).
    started = cli("rollout", name, "--image", NEW, "-n", namespace, "-l", "app=web", "--no-wait")
    assert started.returncode == 0, output(started)
    assert "progress: " not in started.stdout, "--no-wait returns after the edit"
    wait_until(
        lambda: (r := infos(kube, namespace)["web-0"].record) is not None and r.phase is Phase.TAKING_OVER,
        timeout=30,
        what=f"web-0 taking over (controller log: {controller.logs()})",
    )
    # The same reconcile lifted web-0's hold and started web-1: its patch may land just after web-0 swaps.
    wait_until(lambda: targets(kube, namespace)["web-1"] == NEW, timeout=10, what="web-1 started")
    assert targets(kube, namespace) == {"web-0": NEW, "web-1": NEW, "web-2": None}
    assert pod_annotation(kube, namespace, "web-1", ANNOTATION_SWAP_HOLD) == NEW, (
        "web-1 waits before its swap"
    )
    assert pod_annotation(kube, namespace, "web-0", ANNOTATION_SWAP_HOLD) is None, "web-0's hold was lifted"
    paused = cli("pause", name, "--no-wait")
    assert paused.returncode == 0 and f"{name}: spec.strategy.paused=true (generation 2)" in paused.stdout

    def paused_seen() -> bool:
        status = read(kube, name).get("status") or {}
        conditions = {c["type"]: c["reason"] for c in status.get("conditions") or [] if c["status"] == "True"}
        return status.get("observedGeneration") == 2 and conditions.get("Paused") == "PausedBySpec"

    wait_until(paused_seen, timeout=20, what="the controller to report the pause")
    kubelet = Background(sim.sync_all)
    try:
        quiet = cli("pause", name, *FAST)
        assert quiet.returncode == 0, output(quiet) + controller.logs()
        assert f"SidecarRelease {name} unchanged (generation 2)" in quiet.stdout
        assert f"{name}: paused, nothing in flight; 2 of 3 pod(s) run {NEW}" in quiet.stdout
        assert infos(kube, namespace)["web-0"].record.phase is Phase.COMPLETED, "finished, not stranded"
        assert infos(kube, namespace)["web-1"].record.phase is Phase.COMPLETED, "lifted while paused"
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": NEW, "web-2": None}, "nothing new started"
        # A rollout that meets the paused release says so with its own exit code.
        held = cli("rollout", name, "--image", NEW, *FAST)
        assert held.returncode == 4, output(held)
        assert f"`hotupgrade resume {name}` goes on" in held.stdout
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": NEW, "web-2": None}

        edit = "spec.strategy.paused=false (generation 3)"
        completes(cli, controller, "resume", name, edit=edit, image=NEW)
    finally:
        kubelet.close()
    assert kubelet.errors == []
    assert sidecar_images(kube, namespace) == {"web-0": NEW, "web-1": NEW, "web-2": NEW}


def test_a_rollback_withdraws_a_held_upgrade_without_a_failure(
    cli: Cli, sim: KubeletSim, controller: ControllerProcess
) -> None:
    """The release is rolled back (spec.image to status.previousImages[0], the image web-1 still runs)
    while web-1 is held before its swap to NEW: its upgrade is withdrawn (record, hold and target gone),
    not retargeted onto OLD (the step machine failed that as AlreadyRunning) nor lifted toward NEW."""
    kube, namespace, name = cli.kube, cli.namespace, cli.name
    web_pods(sim)
    started = cli("rollout", name, "--image", NEW, "-n", namespace, "-l", "app=web", "--no-wait")
    assert started.returncode == 0, output(started)
    # The kubelet is held back: web-0 takes the window (maxUnavailable 1), web-1 waits held.
    wait_until(
        lambda: (r := infos(kube, namespace)["web-0"].record) is not None and r.phase is Phase.TAKING_OVER,
        timeout=30,
        what=f"web-0 taking over (controller log: {controller.logs()})",
    )

    def web_1_held() -> bool:
        record = infos(kube, namespace)["web-1"].record
        held = pod_annotation(kube, namespace, "web-1", ANNOTATION_SWAP_HOLD) == NEW
        return held and record is not None and record.to_image == NEW and record.in_flight

    wait_until(web_1_held, timeout=20, what=f"web-1 held before its swap ({controller.logs()})")
    assert infos(kube, namespace)["web-1"].record.phase in (Phase.PENDING, Phase.PRE_PULLING)
    previous = (read(kube, name).get("status") or {}).get("previousImages") or []
    assert previous[:1] == [OLD], previous
    rolled = cli("rollback", name, "--no-wait")
    assert rolled.returncode == 0, output(rolled)
    assert f"SidecarRelease {name}: spec.image={OLD} (generation 2)" in rolled.stdout

    def rollback_seen() -> bool:
        return (read(kube, name).get("status") or {}).get("observedGeneration") == 2

    # The kubelet stays held back until the controller has seen the rollback: web-0 is mid-swap, so the
    # window has no room for web-1 yet. (Started before, the kubelet let web-0 end its swap while the
    # release still said NEW: web-1 was then rightly lifted toward NEW, and rolled back after.) The status
    # of generation 2 is written after that reconcile's withdrawals: web-1's target is gone already.
    wait_until(rollback_seen, timeout=20, what=f"the rollback seen ({controller.logs()})")
    assert infos(kube, namespace)["web-1"].target is None, "withdrawn with the rollback"
    # From here web-0's swap ends and the window has room again: web-1 must stay withdrawn, never lifted.
    kubelet = Background(sim.sync_all)
    try:
        followed = cli("rollout", name, "--image", OLD, *FAST)
        assert followed.returncode == 0, output(followed) + controller.logs()
        assert f"SidecarRelease {name} unchanged (generation 2)" in followed.stdout
        assert followed.stdout.rstrip().endswith(f"{name}: complete (AllPodsUpdated): all 3 pods run {OLD}")
    finally:
        kubelet.close()
    assert kubelet.errors == []
    status = read(kube, name)["status"]
    assert (status["failedPods"], status["updatedPods"]) == (0, 3), status
    web_1 = infos(kube, namespace)["web-1"]
    assert web_1.record is None, f"withdrawn, not recorded: {web_1.record}"
    assert web_1.target is None and pod_annotation(kube, namespace, "web-1", ANNOTATION_SWAP_HOLD) is None
    assert sim.agents["web-1"].epoch == 0, "web-1 was never swapped"
    assert "upgrade_withdrawn" in controller.log.read_text(errors="replace")
    said = [(e["reason"], e["message"]) for e in kube.list_events(namespace, "web-1")]
    withdrawn = [m for r, m in said if r == "UpgradeWithdrawn"]
    assert len(withdrawn) == 1 and f"upgrade to {NEW} withdrawn by its release" in withdrawn[0], said
    assert sidecar_images(kube, namespace) == {"web-0": OLD, "web-1": OLD, "web-2": OLD}


def test_refusals_are_clear_and_change_nothing(cli: Cli) -> None:
    kube, namespace, name = cli.kube, cli.namespace, cli.name
    # No controller runs here: the release gets no status.
    created = cli("rollout", name, "--image", NEW, "-n", namespace, "-l", "app=web", "--no-wait")
    assert created.returncode == 0, output(created)
    back = cli("rollback", name)
    assert back.returncode == 1, output(back)
    assert f"SidecarRelease {name} has no previous image to roll back to" in back.stderr
    # The API server's CEL message, verbatim.
    bad = cli("rollout", name, "--image", NEW, "--max-unavailable", "0")
    assert bad.returncode == 1, output(bad)
    assert f'SidecarRelease.hotupgrade.io "{name}" is invalid: ' in bad.stderr
    assert "maxUnavailable must be an integer >= 1 or a percentage from 1% to 100%" in bad.stderr
    release = read(kube, name)
    assert release["metadata"]["generation"] == 1 and release["spec"]["image"] == NEW
    assert release["spec"]["strategy"]["maxUnavailable"] == 1
    unknown = cli("pause", name + "-missing")
    assert unknown.returncode == 1 and f"no SidecarRelease {name}-missing" in unknown.stderr
    nowhere = cli("rollout", name + "-new", "--image", NEW, "-l", "app=web")
    assert nowhere.returncode == 1 and "say which namespaces with -n NAMESPACE" in nowhere.stderr
    assert kube.get_release(name + "-new") is None
    # Nobody acts on the release: following it stops at the progress deadline, with its own code.
    waiting = cli("resume", name, "--progress-deadline", "2", *FAST)
    assert waiting.returncode == 3, output(waiting)
    assert "no progress for 2s" in waiting.stdout and "is hotupgrade-controller running" in waiting.stdout


class RacingKube(Kube):
    """Right before its first spec patch, someone else edits the release: a real 409 for the CLI."""

    def __init__(self, base: Kube) -> None:
        super().__init__(base.api_client)
        self.patches = 0

    def patch_release(self, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        self.patches += 1
        if self.patches == 1:
            merge_release(self, name, {"spec": {"strategy": {"partition": 1}}})
        return super().patch_release(name, ops)


def test_an_edit_that_loses_a_race_is_decided_again_on_a_fresh_read(cli: Cli) -> None:
    kube, namespace, name = cli.kube, cli.namespace, cli.name
    created = cli("rollout", name, "--image", NEW, "-n", namespace, "-l", "app=web", "--no-wait")
    assert created.returncode == 0, output(created)
    racing = RacingKube(kube)
    applied = releaseops.apply(racing, name, lambda current: edits.paused_edit(current, paused=True))
    assert racing.patches == 2, "the first patch lost (409) and the edit was sent again"
    strategy = applied.release["spec"]["strategy"]
    assert (strategy["paused"], strategy["partition"]) == (True, 1), "both edits stand"
    assert applied.release["metadata"]["generation"] == 3
