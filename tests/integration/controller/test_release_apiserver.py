"""SidecarReleases against the real kube-apiserver: the chart's CRD installs and its schema and CEL rules
refuse bad specs with their messages; the release loop (real watch caches, real writes) moves a fleet
batch by batch within maxUnavailable and partition, stops at a pause, reports overlaps and specs it cannot
act on, and its status write survives a real 409.

The kubelet and the agents are simulated (fakes.py): each pod's upgrade is the real per-pod reconciler's.
"""

import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.cli import releasecmd
from controller.keys import ANNOTATION_SWAP_HOLD, ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.reconciler import Reconciler
from controller.rollout import at_risk, at_swap, pod_facts
from releaseapi.release import GROUP, PLURAL, VERSION, parse_release
from tests.integration.controller.fakes import EMPTY, NEW, OLD, Background, KubeletSim, wait_until
from tests.integration.controller.releases import (
    Loop,
    condition,
    create_release,
    delete_release,
    install_crd,
    merge_release,
    release_doc,
    release_events,
    release_loop,
    state,
    unique,
)
from tests.integration.controller.test_controller_process import ControllerProcess
from tests.integration.controller.test_reconcile_apiserver import image_of, make_reconciler
from webhook.injection_status import parse_status
from webhook.kubeclient import load_api_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def crd(kubeconfig: str) -> dict[str, Any]:
    return install_crd(Kube(load_api_client(kubeconfig)))


@pytest.fixture
def releases(kube: Kube, crd: dict[str, Any]) -> Iterator[list[str]]:
    """Names of the releases a test created (cluster-scoped: deleted after it)."""
    created: list[str] = []
    yield created
    for name in created:
        delete_release(kube, name)


def make(kube: Kube, releases: list[str], namespace: str, image: str = NEW, **spec: Any) -> str:
    name = unique("hu-rel")
    create_release(kube, release_doc(name, namespace, image, **spec))
    releases.append(name)
    return name


def read(kube: Kube, name: str) -> dict[str, Any]:
    found = kube.get_release(name)
    assert found is not None
    return found


# --- the CRD ---------------------------------------------------------------------------------------


def test_the_chart_crd_is_served_with_defaults(kube: Kube, namespace: str, releases: list[str]) -> None:
    name = make(kube, releases, namespace)
    spec = read(kube, name)["spec"]
    # Defaults the API server filled in from the schema, as the parser assumes them.
    assert spec["strategy"] == {"maxUnavailable": 1, "partition": 0, "paused": False, "maxFailures": 1}
    assert spec["priority"] == 0
    parsed = parse_release(read(kube, name))
    assert parsed.spec.image == NEW and parsed.generation == 1


# (spec edits, what the API server must say): every CEL rule, and schema checks next to them.
BAD_SPECS = [
    ({"strategy": {"maxUnavailable": 0}}, "maxUnavailable must be an integer >= 1 or a percentage"),
    ({"strategy": {"maxUnavailable": "0%"}}, "maxUnavailable must be an integer >= 1 or a percentage"),
    ({"strategy": {"maxUnavailable": "150%"}}, "maxUnavailable must be an integer >= 1 or a percentage"),
    ({"strategy": {"maxUnavailable": "a lot"}}, "maxUnavailable must be an integer >= 1 or a percentage"),
    ({"strategy": {"partition": -1}}, "partition must be an integer >= 0 or a percentage from 0% to 100%"),
    (
        {"strategy": {"partition": "101%"}},
        "partition must be an integer >= 0 or a percentage from 0% to 100%",
    ),
    ({"emptyImage": NEW}, "image must not be the empty image"),
    (
        {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist",
    ),
    (
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist",
    ),
    ({"strategy": {"maxFailures": 0}}, "spec.strategy.maxFailures: Invalid value: 0"),
    (
        {"selector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}},
        'Unsupported value: "Gt"',
    ),
    ({"image": None}, "spec.image: Required value"),
]


@pytest.mark.parametrize(("edit", "message"), BAD_SPECS, ids=[m[:40] for _, m in BAD_SPECS])
def test_bad_specs_are_refused_with_their_message(
    kube: Kube, namespace: str, releases: list[str], edit: dict[str, Any], message: str
) -> None:
    name = unique("hu-bad")
    doc = release_doc(name, namespace, NEW)
    doc["spec"].update(edit)
    doc["spec"] = {k: v for k, v in doc["spec"].items() if v is not None}
    with pytest.raises(client.ApiException) as refused:
        kube.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, doc, _preload_content=False)
        releases.append(name)  # created after all: delete it, and fail
    assert refused.value.status == 422
    said = json.loads(refused.value.body or "{}").get("message")
    assert said is not None and message in said, refused.value.body


def test_a_good_spec_next_to_the_bad_ones_is_accepted(
    kube: Kube, namespace: str, releases: list[str]
) -> None:
    # The edge values the rules must let through (a rule that refused everything would pass the test above).
    name = make(
        kube,
        releases,
        namespace,
        emptyImage=EMPTY,
        strategy={"maxUnavailable": "100%", "partition": "0%", "maxFailures": 1},
        selector={"matchExpressions": [{"key": "app", "operator": "Exists"}]},
    )
    assert read(kube, name)["spec"]["strategy"]["maxUnavailable"] == "100%"


# --- the loop --------------------------------------------------------------------------------------


def drive(
    loop: Loop,
    pods: Reconciler,
    sim: KubeletSim,
    name: str,
    *,
    until: Any,
    allowed: int,
    timeout: float = 120,
) -> dict[str, Any]:
    """Tick the release loop, the per-pod reconciler and the kubelet until `until(release)`; at every tick
    no more than `allowed` pods may be at risk (queued, or in flight before their new Envoy serves)."""
    deadline = time.monotonic() + timeout
    worst = 0
    while time.monotonic() < deadline:
        loop.reconciler.reconcile(name)
        for pod in sim.agents:
            pods.reconcile(sim.namespace, pod)
        sim.sync_all()
        raw_pods, _ = sim.kube.list_pods(sim.namespace)
        risky = [p["metadata"]["name"] for p in raw_pods if at_risk(pod_facts(p))]
        worst = max(worst, len(risky))
        assert len(risky) <= allowed, f"budget exceeded: {risky}"
        release = read(sim.kube, name)
        if until(release):
            release["worst"] = worst
            return release
        time.sleep(0.2)
    raise AssertionError(f"timed out; status: {read(sim.kube, name).get('status')}")


@contextmanager
def first_batch(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str], count: int, **spec: Any
) -> Iterator[tuple[Loop, str]]:
    """`count` pods web-N, a release of them with `spec`, one reconcile of it: the loop and its name."""
    for i in range(count):
        sim.add_pod(f"web-{i}")
    with release_loop(kube, namespace) as loop:
        name = make(kube, releases, namespace, **spec)
        loop.cached(name)
        loop.reconciler.reconcile(name)
        yield loop, name


def targets(kube: Kube, namespace: str) -> dict[str, str | None]:
    pods, _ = kube.list_pods(namespace)
    return {
        p["metadata"]["name"]: p["metadata"].get("annotations", {}).get("hotupgrade.io/target-image")
        for p in pods
    }


def sidecar_images(kube: Kube, namespace: str) -> dict[str, str]:
    pods, _ = kube.list_pods(namespace)
    return {
        p["metadata"]["name"]: parse_status(
            p["metadata"]["annotations"]["hotupgrade.io/status"]
        ).sidecar_image
        for p in pods
    }


def complete(reason: str) -> Any:
    def check(release: dict[str, Any]) -> bool:
        found = condition(release, "Complete")
        return found is not None and found[:2] == ("True", reason)

    return check


def test_a_release_moves_the_fleet_batch_by_batch_within_budget_and_partition(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    for i in range(5):
        sim.add_pod(f"web-{i}")
    sim.add_pod("other-0", labels={"app": "other"})  # not selected: never touched
    pods, _ = make_reconciler(kube)
    with release_loop(kube, namespace) as loop:
        name = make(kube, releases, namespace, strategy={"maxUnavailable": 2, "partition": 1})
        loop.cached(name)
        assert name in loop.enqueued, "the release's creation was queued"
        loop.reconciler.reconcile(name)
        first = targets(kube, namespace)
        assert first == {
            "web-0": NEW,
            "web-1": NEW,
            "web-2": None,
            "web-3": None,
            "web-4": None,
            "other-0": None,
        }
        status = read(kube, name)["status"]
        assert (status["matchedPods"], status["upgradingPods"], status["observedGeneration"]) == (5, 2, 1)
        assert state(read(kube, name), "Progressing") == ("True", "RollingOut")
        done = drive(loop, pods, sim, name, until=complete("PartitionReached"), allowed=2)
        assert done["worst"] == 2, "the budget was used, not only respected"
    images = sidecar_images(kube, namespace)
    assert images == {"web-0": NEW, "web-1": NEW, "web-2": NEW, "web-3": NEW, "web-4": OLD, "other-0": OLD}
    final = read(kube, name)["status"]
    assert (final["matchedPods"], final["updatedPods"], final["failedPods"], final["upgradingPods"]) == (
        5,
        4,
        0,
        0,
    )
    assert final["previousImages"] == [OLD]
    assert state(read(kube, name), "Progressing") == ("False", "RolloutComplete")
    events = release_events(kube, name)
    reasons = [e["reason"] for e in events]
    assert reasons.count("BatchStarted") >= 2 and reasons[-1] == "RolloutComplete", reasons
    assert f"started 2 upgrade(s) to {NEW}: {namespace}/web-0, {namespace}/web-1;" in events[0]["message"]
    metrics = loop.metrics.release
    assert metrics.matched.labels(release=name)._value.get() == 5
    assert metrics.updated.labels(release=name)._value.get() == 4
    assert metrics.started.labels(release=name)._value.get() == 4
    held = kube.get_pod(namespace, "web-4")
    assert held is not None and image_of(held, "hotupgrade-a") == OLD, "the partition's pod was not touched"
    # `hotupgrade releases NAME` shows the same from the cluster.
    out = io.StringIO()
    assert releasecmd.releases(kube, [name], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[1].split() == [name, NEW, "5", "4", "5", "0", "0", "no", "RolloutComplete"]
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(f"{namespace}/")}
    assert rows[f"{namespace}/web-0"] == [f"{namespace}/web-0", "Updated", NEW, NEW, "Completed"]
    assert rows[f"{namespace}/web-4"] == [f"{namespace}/web-4", "Waiting", OLD, "-", "-"]
    assert f"roll back to (set spec.image): {OLD}" in out.getvalue()


def test_pause_stops_new_batches_and_lets_the_upgrade_in_flight_finish(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    pods, _ = make_reconciler(kube)
    with first_batch(kube, namespace, sim, releases, 3) as (loop, name):
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": None, "web-2": None}
        merge_release(kube, name, {"spec": {"strategy": {"paused": True}}})

        def web0_done(release: dict[str, Any]) -> bool:
            return sidecar_images(kube, namespace)["web-0"] == NEW and release["status"]["upgradingPods"] == 0

        paused = drive(loop, pods, sim, name, until=web0_done, allowed=1)
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": None, "web-2": None}, "nothing new started"
        assert state(paused, "Paused") == ("True", "PausedBySpec")
        assert state(paused, "Progressing") == ("False", "PausedBySpec")
        assert paused["status"]["observedGeneration"] == 2 and paused["status"]["updatedPods"] == 1
        for _ in range(3):  # and it stays so
            loop.reconciler.reconcile(name)
        assert targets(kube, namespace)["web-1"] is None
        merge_release(kube, name, {"spec": {"strategy": {"paused": False}}})
        loop.reconciler.reconcile(name)
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": NEW, "web-2": None}
    reasons = [e["reason"] for e in release_events(kube, name)]
    assert "RolloutPaused" in reasons and "RolloutResumed" in reasons, reasons


def queued(kube: Kube, namespace: str) -> dict[str, tuple[str | None, str | None]]:
    """Each pod's (target image, swap hold)."""
    pods, _ = kube.list_pods(namespace)
    return {
        p["metadata"]["name"]: (
            p["metadata"].get("annotations", {}).get(ANNOTATION_TARGET_IMAGE),
            p["metadata"].get("annotations", {}).get(ANNOTATION_SWAP_HOLD),
        )
        for p in pods
    }


class RacingKube(Kube):
    """Right before its first status write, a user edits the release (a real write, so a real 409); what
    the pods were queued for then is kept in `before`."""

    def __init__(self, base: Kube, namespace: str) -> None:
        super().__init__(base.api_client)
        self.namespace = namespace
        self.raced = 0
        self.before: dict[str, tuple[str | None, str | None]] = {}

    def replace_release_status(self, name: str, body: Any) -> dict[str, Any]:
        if not self.raced:
            self.raced += 1
            self.before = queued(self, self.namespace)
            merge_release(self, name, {"spec": {"strategy": {"partition": 3}}})
        return super().replace_release_status(name, body)


def test_a_status_write_that_loses_a_race_is_replanned_on_the_new_spec(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    for i in range(3):
        sim.add_pod(f"web-{i}")
    with release_loop(kube, namespace) as loop:
        name = make(kube, releases, namespace, strategy={"maxUnavailable": 3})
        loop.cached(name)
        racing = RacingKube(kube, namespace)
        loop.reconciler.kube = racing
        assert not loop.reconciler.reconcile(name).done
        assert racing.raced == 1
        assert loop.metrics.api_retries.labels(kind="conflict")._value.get() == 1
    # The first attempt had started all three pods (held before their swap), then lost the race to
    # `partition: 3` (generation 2): the rerun planned on the edited spec, so it withdrew them (nothing was
    # swapped: the partition keeps every pod on its image, as Kruise's does), and its status says so. A
    # rerun on the first spec would have left them queued.
    assert racing.before == {f"web-{i}": (NEW, NEW) for i in range(3)}
    assert queued(kube, namespace) == {f"web-{i}": (None, None) for i in range(3)}
    release = read(kube, name)
    status = release["status"]
    assert status["observedGeneration"] == 2
    assert (status["matchedPods"], status["upgradingPods"], status["updatedPods"]) == (3, 0, 0)
    assert state(release, "Complete") == ("True", "PartitionReached")
    assert sidecar_images(kube, namespace) == {f"web-{i}": OLD for i in range(3)}


class RollbackAfterReadKube(Kube):
    """The user rolls the release back (spec.image to OLD) right after the reconciler's first read of it,
    a real write: everything that reconcile planned from that read is stale before its first write."""

    def __init__(self, base: Kube) -> None:
        super().__init__(base.api_client)
        self.reads = 0

    def get_release(self, name: str) -> dict[str, Any] | None:
        found = super().get_release(name)
        self.reads += 1
        if self.reads == 1:
            merge_release(self, name, {"spec": {"image": OLD}})
        return found


def test_a_lift_is_never_decided_on_a_spec_edited_since_it_was_read(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    """web-0 waits at its swap to NEW with room in the window, so a plan of generation 1 lifts it; the
    rollback lands between that plan's read and its lift. The release is read again right before the lift:
    the reconcile is re-planned on generation 2 and web-0 is withdrawn, never swapped (a lift patched on
    the stale plan let it swap to NEW and back, or fail Aborted)."""
    sim.add_pod("web-0")
    pods, _ = make_reconciler(kube)
    with release_loop(kube, namespace) as loop:
        name = make(kube, releases, namespace)
        loop.cached(name)
        loop.reconciler.reconcile(name)
        assert queued(kube, namespace) == {"web-0": (NEW, NEW)}, "started with its swap held"

        def cached_at_the_swap() -> bool:
            pods.reconcile(namespace, "web-0")
            sim.sync_all()
            return at_swap(loop.fleet.pods()[f"{namespace}/web-0"].facts)

        wait_until(cached_at_the_swap, timeout=30, what="web-0 waiting at its swap, as the cache sees it")
        racing = RollbackAfterReadKube(kube)
        loop.reconciler.kube = racing
        loop.reconciler.reconcile(name)
        withdrawn = {"web-0": (None, NEW)}  # the target removed; the hold kept as the step machine's cue
        assert queued(kube, namespace) == withdrawn, "lifted on the stale plan"
        # The plan's read, the read right before the lift (generation 2: a conflict), the rerun's read.
        # (Without that second read the lift went through, and the status, unchanged, was not written:
        # no 409 either.)
        assert racing.reads == 3
        assert loop.metrics.api_retries.labels(kind="conflict")._value.get() == 1
        pods.reconcile(namespace, "web-0")
        loop.reconciler.kube = kube
        wait_until(
            lambda: loop.fleet.pods()[f"{namespace}/web-0"].facts.record is None,
            timeout=10,
            what="the record's removal cached",
        )
        loop.reconciler.reconcile(name)
    assert queued(kube, namespace) == {"web-0": (None, None)}
    web_0 = kube.get_pod(namespace, "web-0")
    assert web_0 is not None and pod_facts(web_0).record is None, "dropped, not Failed"
    assert sim.agents["web-0"].epoch == 0, "never swapped"
    assert image_of(web_0, "hotupgrade-b") == EMPTY, "the standby never left the empty image"
    release = read(kube, name)
    status = release["status"]
    assert (status["observedGeneration"], status["updatedPods"], status["failedPods"]) == (2, 1, 0)
    assert state(release, "Complete") == ("True", "AllPodsUpdated")


def test_overlapping_releases_are_reported_never_fought_over(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    sim.add_pod("web-0")
    sim.add_pod("web-1", labels={"app": "web", "track": "canary"})
    newer = "registry.local/hotupgrade-sidecar:3"
    with release_loop(kube, namespace) as loop:
        fleet = make(kube, releases, namespace, strategy={"maxUnavailable": 2})
        canary = make(
            kube,
            releases,
            namespace,
            image=newer,
            priority=10,
            selector={"matchLabels": {"app": "web", "track": "canary"}},
        )
        loop.cached(fleet, canary)
        for name in (fleet, canary, fleet):
            loop.reconciler.reconcile(name)
    assert targets(kube, namespace) == {"web-0": NEW, "web-1": newer}
    status = read(kube, fleet)["status"]
    assert status["matchedPods"] == 1
    assert status["overlaps"] == [{"release": canary, "priority": 10, "pods": 1}]
    assert read(kube, canary)["status"]["overlaps"] == []


def test_a_spec_the_controller_cannot_act_on_is_degraded_with_the_field(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    sim.add_pod("web-0")
    with release_loop(kube, namespace) as loop:
        name = make(kube, releases, namespace, image="registry.local/Not An Image")  # the schema lets it be
        loop.cached(name)
        assert loop.reconciler.reconcile(name).done
    release = read(kube, name)
    degraded = condition(release, "Degraded")
    assert degraded is not None and degraded[:2] == ("True", "InvalidSpec")
    assert "spec.image" in degraded[2] and "not an image reference" in degraded[2]
    assert release["status"]["observedGeneration"] == 1
    assert targets(kube, namespace) == {"web-0": None}
    assert [e["reason"] for e in release_events(kube, name)] == ["InvalidSpec"]


def test_a_restarted_controller_resumes_from_the_cluster(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    pods, _ = make_reconciler(kube)
    with first_batch(kube, namespace, sim, releases, 2) as (_, name):
        pass
    assert targets(kube, namespace) == {"web-0": NEW, "web-1": None}
    # A new process: empty memory, fresh caches. web-0 is queued, so it uses the whole budget.
    with release_loop(kube, namespace) as second:
        second.reconciler.reconcile(name)
        assert targets(kube, namespace) == {"web-0": NEW, "web-1": None}, "no second pod at risk"
        assert read(kube, name)["status"]["upgradingPods"] == 1
        drive(second, pods, sim, name, until=complete("AllPodsUpdated"), allowed=1)
    assert sidecar_images(kube, namespace) == {"web-0": NEW, "web-1": NEW}


@pytest.fixture
def controller(kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[ControllerProcess]:
    """`hotupgrade-controller` as the chart runs it (leader election on), scoped to the test namespace."""
    process = ControllerProcess(kubeconfig, namespace, "ctl-release", tmp_path / "controller.log")
    yield process
    process.stop()


def test_the_controller_process_runs_the_release_loop_under_its_lease(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str], controller: ControllerProcess
) -> None:
    for i in range(2):
        sim.add_pod(f"web-{i}")
    kubelet = Background(sim.sync_all)
    try:
        name = make(kube, releases, namespace)
        done = wait_until(
            lambda: complete("AllPodsUpdated")(release := read(kube, name)) and release,
            timeout=120,
            what=f"the release to complete (controller log: {controller.logs()})",
        )
    finally:
        kubelet.close()
    assert kubelet.errors == []
    assert sidecar_images(kube, namespace) == {"web-0": NEW, "web-1": NEW}
    assert done["status"]["updatedPods"] == 2
    reasons = [e["reason"] for e in release_events(kube, name)]
    assert reasons.count("BatchStarted") == 2 and reasons[-1] == "RolloutComplete", reasons


def test_held_upgrades_of_a_deleted_or_narrowed_release_are_withdrawn(
    kube: Kube, namespace: str, sim: KubeletSim, releases: list[str]
) -> None:
    """Nothing would ever lift the hold of a pod no release governs: a release deleted, or its selector
    narrowed, while pods were held. The next release reconcile withdraws them (nothing was swapped)."""
    for index in range(3):
        sim.add_pod(f"web-{index}")
    pods, _ = make_reconciler(kube)
    with release_loop(kube, namespace) as loop:
        loop.reconciler.orphan_sweep_seconds = 0  # every reconcile sweeps (once a minute by default)
        narrowed = make(kube, releases, namespace, strategy={"maxUnavailable": 2})
        loop.cached(narrowed)
        loop.reconciler.reconcile(narrowed)
        assert queued(kube, namespace) == {"web-0": (NEW, NEW), "web-1": (NEW, NEW), "web-2": (None, None)}
        pods.reconcile(namespace, "web-0")  # web-0 gets its record (checked, pre-pulling, held)
        merge_release(kube, narrowed, {"spec": {"selector": {"matchLabels": {"app": "none"}}}})
        wait_until(
            lambda: (
                loop.fleet.releases()[narrowed].parsed is not None
                and loop.fleet.releases()[narrowed].raw["metadata"]["generation"] == 2
            ),
            timeout=10,
            what="the edit cached",
        )
        wait_until(
            lambda: loop.fleet.pods()[f"{namespace}/web-0"].facts.record is not None,
            timeout=10,
            what="web-0's record cached",
        )
        loop.reconciler.reconcile(narrowed)
        # web-1 had no record: the release removes target and hold; web-0's record and hold are the step
        # machine's to drop, told by its target gone.
        assert queued(kube, namespace) == {"web-0": (None, NEW), "web-1": (None, None), "web-2": (None, None)}
        pods.reconcile(namespace, "web-0")
        assert queued(kube, namespace)["web-0"] == (None, None)
        web_0 = kube.get_pod(namespace, "web-0")
        assert web_0 is not None and pod_facts(web_0).record is None, "dropped, not Failed"
        # Deleted: a second release queues web-2, then goes; its reconcile finds it gone and withdraws.
        merge_release(kube, narrowed, {"spec": {"selector": {"matchLabels": {"app": "web"}}}})
        gone = make(kube, releases, namespace, priority=5, strategy={"maxUnavailable": 1})
        loop.cached(gone)
        loop.reconciler.reconcile(gone)
        held = {n: t for n, t in queued(kube, namespace).items() if t != (None, None)}
        assert list(held.values()) == [(NEW, NEW)], held
        delete_release(kube, gone)
        delete_release(kube, narrowed)
        wait_until(
            lambda: not {gone, narrowed} & set(loop.fleet.releases()), timeout=10, what="the deletions cached"
        )
        loop.reconciler.reconcile(gone)
    assert queued(kube, namespace) == {"web-0": (None, None), "web-1": (None, None), "web-2": (None, None)}
    assert all(sim.agents[n].epoch == 0 for n in ("web-0", "web-1", "web-2")), "none swapped"
