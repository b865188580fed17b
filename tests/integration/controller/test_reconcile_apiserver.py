"""The reconciler against a real kube-apiserver: recording, Events, conflicts, rollback, resuming.

The kubelet and the agents are simulated (see fakes.py); what is under test is every write the
controller makes and how the API server answers it.
"""

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from controller.agents import AgentClient
from controller.errors import ConflictError
from controller.events import due
from controller.keys import (
    ANNOTATION_RETRY,
    ANNOTATION_STATUS,
    ANNOTATION_TARGET_IMAGE,
    ANNOTATION_UPGRADE,
)
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.observed import AgentView, BudgetView, observe_pod
from controller.patches import patch_for
from controller.policy import Policy
from controller.reconciler import Reconciler
from controller.record import Phase, Reason, UpgradeRecord, parse_record
from controller.result import DONE
from controller.steps import next_step
from tests.integration.controller.fakes import BROKEN, EMPTY, NEW, OLD, KubeletSim, wait_until
from webhook.injection_status import parse_status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

POLICY = Policy(step_timeout=20, drain_grace=10, poll_interval=0.2, pre_pull=False)


def record_of(pod: dict[str, Any]) -> UpgradeRecord | None:
    raw = pod["metadata"].get("annotations", {}).get(ANNOTATION_UPGRADE)
    return parse_record(raw) if raw else None


def image_of(pod: dict[str, Any], container: str) -> str:
    return str(next(c["image"] for c in pod["spec"]["containers"] if c["name"] == container))


def annotate(kube: Kube, namespace: str, name: str, **annotations: str) -> None:
    kube.merge_patch_pod(namespace, name, {"metadata": {"annotations": annotations}})


def make_reconciler(kube: Kube) -> tuple[Reconciler, ControllerMetrics]:
    metrics = ControllerMetrics(CollectorRegistry())
    return Reconciler(kube, AgentClient(timeout=2.0), POLICY, metrics=metrics), metrics


def drive(
    reconciler: Reconciler,
    sim: KubeletSim,
    name: str,
    until: Callable[[dict[str, Any]], bool],
    *,
    timeout: float = 60,
) -> dict[str, Any]:
    """Alternate reconcile and kubelet sync until `until(pod)` holds."""
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        reconciler.reconcile(sim.namespace, name)
        sim.sync(name)
        pod = sim.kube.get_pod(sim.namespace, name)
        assert pod is not None
        if until(pod):
            return pod
        time.sleep(0.1)
    raise AssertionError(f"timed out; last record: {record_of(pod) if pod else None}")


def phase_is(*phases: Phase) -> Callable[[dict[str, Any]], bool]:
    def check(pod: dict[str, Any]) -> bool:
        record = record_of(pod)
        return record is not None and record.phase in phases

    return check


def start_pre_pull(
    reconciler: Reconciler, sim: KubeletSim, name: str
) -> tuple[dict[str, Any], UpgradeRecord, dict[str, Any]]:
    """Ask for NEW and reconcile once: the pod, its PrePulling record and the pre-pull pod created."""
    annotate(sim.kube, sim.namespace, name, **{ANNOTATION_TARGET_IMAGE: NEW})
    assert not reconciler.reconcile(sim.namespace, name).done
    pod = sim.kube.get_pod(sim.namespace, name)
    assert pod is not None
    record = record_of(pod)
    assert record is not None and record.phase is Phase.PRE_PULLING and record.pre_pull_pod is not None
    puller = sim.kube.get_pod(sim.namespace, record.pre_pull_pod)
    assert puller is not None, "the pre-pull pod was created (admitted)"
    return pod, record, puller


def event_reasons(kube: Kube, namespace: str, name: str) -> list[str]:
    """The controller's Events on the pod, oldest first (the scheduler's are left out)."""
    ours = [e for e in kube.list_events(namespace, name) if e["source"].get("component") == kube.component]
    return [e["reason"] for e in sorted(ours, key=lambda e: int(e["metadata"]["resourceVersion"]))]


def test_annotated_pod_is_upgraded_and_every_step_is_recorded(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0")
    reconciler, metrics = make_reconciler(kube)
    assert reconciler.reconcile(namespace, "web-0") == DONE, "no target: nothing to do"
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    seen: list[Phase] = []

    def track(pod: dict[str, Any]) -> bool:
        record = record_of(pod)
        if record is not None and (not seen or seen[-1] is not record.phase):
            seen.append(record.phase)
        return record is not None and record.phase is Phase.COMPLETED

    pod = drive(reconciler, sim, "web-0", track)
    assert seen[0] is Phase.TAKING_OVER and seen[-1] is Phase.COMPLETED
    assert Phase.DRAINING in seen and Phase.RESETTING in seen
    record = record_of(pod)
    assert record is not None
    assert (record.from_image, record.to_image, record.attempt, record.taken_over) == (OLD, NEW, 1, True)
    assert record.finished is not None and record.finished >= record.started
    status = parse_status(pod["metadata"]["annotations"][ANNOTATION_STATUS])
    assert (status.active, status.standby, status.sidecar_image) == ("hotupgrade-b", "hotupgrade-a", NEW)
    assert image_of(pod, "hotupgrade-b") == NEW and image_of(pod, "hotupgrade-a") == EMPTY
    assert image_of(pod, "app") == "registry.local/demo-app:1"
    reasons = event_reasons(kube, namespace, "web-0")
    assert reasons == ["UpgradeStarted", "TakenOver", "Drained", "UpgradeCompleted"], reasons
    assert metrics.upgrades.labels(result="completed", reason="")._value.get() == 1
    assert reconciler.reconcile(namespace, "web-0") == DONE, "completed: quiet"


def test_stale_resource_version_is_refused_with_409(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    sim.add_pod("web-0")
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    pod = kube.get_pod(namespace, "web-0")
    assert pod is not None
    agents = AgentClient().fetch_all(pod["status"]["podIP"], ("a", "b"))
    admitted = BudgetView(admitted=True)  # no PodDisruptionBudget in this namespace
    action = next_step(observe_pod(pod, now=datetime.now(UTC), agents=agents, budget=admitted), POLICY)
    stale = pod["metadata"]["resourceVersion"]
    annotate(kube, namespace, "web-0", **{"example.com/other-writer": "1"})  # a real concurrent write
    with pytest.raises(ConflictError) as conflict:
        kube.patch_pod(namespace, "web-0", patch_for(action, stale))  # type: ignore[arg-type]
    assert conflict.value.status == 409
    after = kube.get_pod(namespace, "web-0")
    assert after is not None and image_of(after, "hotupgrade-b") == EMPTY and record_of(after) is None


def test_failed_test_op_is_a_conflict_not_a_clobber(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    sim.add_pod("web-0")
    pod = kube.get_pod(namespace, "web-0")
    assert pod is not None
    ops = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": pod["metadata"]["resourceVersion"]},
        {"op": "test", "path": "/spec/containers/1/image", "value": "registry.local/not-what-is-there:1"},
        {"op": "replace", "path": "/spec/containers/1/image", "value": NEW},
    ]
    with pytest.raises(ConflictError) as refused:
        kube.patch_pod(namespace, "web-0", ops)
    assert refused.value.status == 422
    after = kube.get_pod(namespace, "web-0")
    assert after is not None and image_of(after, "hotupgrade-b") == EMPTY


class RacingKube(Kube):
    """Right before its first pod patch, somebody else writes the pod (a real write, real 409)."""

    def __init__(self, base: Kube) -> None:
        super().__init__(base.api_client)
        self.raced = False

    def patch_pod(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.raced:
            self.raced = True
            self.merge_patch_pod(namespace, name, {"metadata": {"annotations": {"example.com/racer": "won"}}})
        return super().patch_pod(namespace, name, ops)


def test_reconcile_rereads_and_retries_after_a_real_conflict(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0")
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    metrics = ControllerMetrics(CollectorRegistry())
    racing = RacingKube(kube)
    reconciler = Reconciler(racing, AgentClient(), POLICY, metrics=metrics)
    assert not reconciler.reconcile(namespace, "web-0").done
    assert racing.raced and metrics.api_retries.labels(kind="conflict")._value.get() == 1
    pod = kube.get_pod(namespace, "web-0")
    assert pod is not None
    record = record_of(pod)
    assert record is not None and record.phase is Phase.TAKING_OVER and record.attempt == 1
    assert pod["metadata"]["annotations"]["example.com/racer"] == "won", "the other write survived"
    assert image_of(pod, "hotupgrade-b") == NEW
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeStarted"], "one start, not two"


def test_image_that_cannot_start_is_rolled_back_once(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    sim.add_pod("web-0")
    reconciler, metrics = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: BROKEN})
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.FAILED))
    record = record_of(pod)
    assert record is not None and record.reason is Reason.IMAGE_PULL_FAILED
    assert record.message.endswith("rolled back") and "ErrImagePull" in record.message
    assert image_of(pod, "hotupgrade-b") == EMPTY and image_of(pod, "hotupgrade-a") == OLD
    assert parse_status(pod["metadata"]["annotations"][ANNOTATION_STATUS]).active == "hotupgrade-a"
    assert sim.agents["web-0"].active == "a", "the old Envoy never stopped serving"
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeStarted", "UpgradeFailed", "RolledBack"]
    version = pod["metadata"]["resourceVersion"]
    for _ in range(5):  # no retry storm: nothing is written for the same target again
        assert reconciler.reconcile(namespace, "web-0") == DONE
    again = kube.get_pod(namespace, "web-0")
    assert again is not None and again["metadata"]["resourceVersion"] == version
    assert metrics.upgrades.labels(result="failed", reason="ImagePullFailed")._value.get() == 1


def test_explicit_retry_and_new_target_restart_after_failure(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0")
    reconciler, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: BROKEN})
    drive(reconciler, sim, "web-0", phase_is(Phase.FAILED))
    sim.broken.clear()  # the image got fixed under the same tag
    annotate(kube, namespace, "web-0", **{ANNOTATION_RETRY: "1"})
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED))
    record = record_of(pod)
    assert record is not None and record.attempt == 2 and record.to_image == BROKEN
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    pod = drive(reconciler, sim, "web-0", lambda p: _done_to(p, NEW))
    record = record_of(pod)
    assert record is not None and (record.attempt, record.old_slot, record.new_slot) == (1, "b", "a")


def _done_to(pod: dict[str, Any], image: str) -> bool:
    record = record_of(pod)
    return record is not None and record.to_image == image and record.phase is Phase.COMPLETED


def test_a_new_reconciler_resumes_an_upgrade_in_flight(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    sim.add_pod("web-0", drain_seconds=3)
    first, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    drive(first, sim, "web-0", phase_is(Phase.DRAINING))
    second, _ = make_reconciler(kube)  # a restarted controller: no memory but the annotation
    pod = drive(second, sim, "web-0", phase_is(Phase.COMPLETED))
    record = record_of(pod)
    assert record is not None and record.attempt == 1
    assert event_reasons(kube, namespace, "web-0").count("UpgradeStarted") == 1


def test_two_upgrades_in_a_row(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    sim.add_pod("web-0")
    reconciler, _ = make_reconciler(kube)
    for target, active in ((NEW, "hotupgrade-b"), ("registry.local/hotupgrade-sidecar:3", "hotupgrade-a")):
        annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: target})
        pod = drive(reconciler, sim, "web-0", lambda p, t=target: _done_to(p, t))  # type: ignore[misc]
        status = parse_status(pod["metadata"]["annotations"][ANNOTATION_STATUS])
        assert (status.active, status.sidecar_image) == (active, target)
    assert sim.agents["web-0"].epoch == 2
    record = json.loads(pod["metadata"]["annotations"][ANNOTATION_UPGRADE])
    assert record["from"] == NEW and record["phase"] == "Completed"


class CountingAgents(AgentClient):
    """The real agent client, counting how often a reconcile asks the agents."""

    def __init__(self) -> None:
        super().__init__(timeout=2.0)
        self.asked = 0

    def fetch_all(self, pod_ip: str | None, slots: Iterable[str] = ("a", "b")) -> dict[str, AgentView]:
        self.asked += 1
        return super().fetch_all(pod_ip, slots)


def test_the_agents_are_asked_once_per_decision_that_reads_them(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0")
    agents = CountingAgents()
    reconciler = Reconciler(kube, agents, POLICY, metrics=ControllerMetrics(CollectorRegistry()))
    assert reconciler.reconcile(namespace, "web-0") == DONE and agents.asked == 0, "no target: not asked"
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    assert not reconciler.reconcile(namespace, "web-0").done and agents.asked == 1
    drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED))
    asked = agents.asked
    for _ in range(3):
        assert reconciler.reconcile(namespace, "web-0") == DONE
    assert agents.asked == asked, "upgraded pods cost no agent calls"


def test_pre_pull_pod_runs_the_target_on_the_node_and_is_removed_after_the_swap(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    # Bound to a node without a kubelet (none exists by that name): the test plays the kubelet for the
    # pre-pull pod too. Quick, before the pod garbage collector's quarantine for orphans (40 s) ends.
    node = f"hu-no-such-node-{namespace}"
    sim.add_pod("web-0", node_name=node)
    reconciler = Reconciler(
        kube,
        AgentClient(timeout=2.0),
        replace(POLICY, pre_pull=True),
        metrics=ControllerMetrics(CollectorRegistry()),
    )
    pod, _, puller = start_pre_pull(reconciler, sim, "web-0")
    pre_pull = str(puller["metadata"]["name"])
    assert puller["spec"]["nodeName"] == node
    assert [c["image"] for c in puller["spec"]["containers"]] == [NEW]
    assert puller["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]
    assert not reconciler.reconcile(namespace, "web-0").done, "pre-pull still running: wait"
    waiting = kube.get_pod(namespace, "web-0")
    assert waiting is not None and image_of(waiting, "hotupgrade-b") == EMPTY
    sim.pre_pull_succeeded(pre_pull)
    pod = drive(reconciler, sim, "web-0", phase_is(Phase.COMPLETED))
    assert image_of(pod, "hotupgrade-b") == NEW and image_of(pod, "hotupgrade-a") == EMPTY
    assert kube.get_pod(namespace, pre_pull) is None, "removed once the standby got the image"
    assert event_reasons(kube, namespace, "web-0") == [
        "UpgradeStarted",
        "TakenOver",
        "Drained",
        "UpgradeCompleted",
    ]


def test_agents_unreachable_keeps_the_upgrade_pending(kube: Kube, namespace: str, sim: KubeletSim) -> None:
    agents = sim.add_pod("web-0")
    agents.close()  # nobody answers on the pod IP
    reconciler, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    reconciler.reconcile(namespace, "web-0")
    pod = wait_until(lambda: kube.get_pod(namespace, "web-0"), timeout=10, what="pod")
    record = record_of(pod)
    assert record is not None and record.phase is Phase.PENDING and "unreachable" in record.message
    assert image_of(pod, "hotupgrade-b") == EMPTY


# --- Events survive a controller killed between the record write and the Event post -----------

UPGRADE_EVENTS = ["UpgradeStarted", "TakenOver", "Drained", "UpgradeCompleted"]


class ControllerKilled(BaseException):
    """The process died here: a BaseException, so nothing in the controller handles it."""


class DyingEventSink(Kube):
    """A Kube whose process dies once around posting the Event `reason`: before it reaches the API
    server, or after it landed but before the controller could mark it posted."""

    def __init__(self, base: Kube, *, reason: str, after_post: bool) -> None:
        super().__init__(base.api_client)
        self.reason = reason
        self.after_post = after_post
        self.killed = False

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if body["reason"] != self.reason or self.killed:
            return super().create_event(namespace, body)
        self.killed = True
        if self.after_post:
            super().create_event(namespace, body)
        raise ControllerKilled(f"killed {'after' if self.after_post else 'before'} posting {body['reason']}")


@pytest.mark.parametrize(
    ("reason", "after_post"),
    [(reason, False) for reason in UPGRADE_EVENTS] + [("TakenOver", True), ("UpgradeCompleted", True)],
)
def test_event_cut_off_by_a_crash_is_posted_exactly_once_after_restart(
    kube: Kube, namespace: str, sim: KubeletSim, reason: str, after_post: bool
) -> None:
    sim.add_pod("web-0", drain_seconds=2)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    dying = DyingEventSink(kube, reason=reason, after_post=after_post)
    first = Reconciler(
        dying, AgentClient(timeout=2.0), POLICY, metrics=ControllerMetrics(CollectorRegistry())
    )
    with pytest.raises(ControllerKilled):
        drive(first, sim, "web-0", lambda _: False)
    pod = kube.get_pod(namespace, "web-0")
    assert pod is not None
    record = record_of(pod)
    owes = due(record)
    assert owes is not None, "the step was written, the Event not marked"
    assert owes.reason == reason
    upto = UPGRADE_EVENTS.index(reason) + 1
    emitted = UPGRADE_EVENTS[:upto] if after_post else UPGRADE_EVENTS[: upto - 1]
    assert event_reasons(kube, namespace, "web-0") == emitted
    restarted, _ = make_reconciler(kube)  # no memory but the annotation
    restarted.reconcile(namespace, "web-0")
    reasons = event_reasons(kube, namespace, "web-0")
    assert reasons[:upto] == UPGRADE_EVENTS[:upto] and reasons.count(reason) == 1, reasons
    pod = drive(restarted, sim, "web-0", phase_is(Phase.COMPLETED))
    for _ in range(3):
        restarted.reconcile(namespace, "web-0")
    assert event_reasons(kube, namespace, "web-0") == UPGRADE_EVENTS, "each Event once, none lost"
    final = record_of(pod)
    assert final is not None and final.event is not None and final.event.posted


def test_record_from_before_owed_events_causes_no_duplicate_events(
    kube: Kube, namespace: str, sim: KubeletSim
) -> None:
    sim.add_pod("web-0", drain_seconds=3)
    first, _ = make_reconciler(kube)
    annotate(kube, namespace, "web-0", **{ANNOTATION_TARGET_IMAGE: NEW})
    pod = drive(first, sim, "web-0", phase_is(Phase.DRAINING))
    assert event_reasons(kube, namespace, "web-0") == ["UpgradeStarted", "TakenOver"]
    legacy = json.loads(pod["metadata"]["annotations"][ANNOTATION_UPGRADE])
    del legacy["event"]  # as a controller before owed Events wrote it (it posted its Events inline)
    annotate(kube, namespace, "web-0", **{ANNOTATION_UPGRADE: json.dumps(legacy)})
    upgraded, _ = make_reconciler(kube)
    pod = drive(upgraded, sim, "web-0", phase_is(Phase.COMPLETED))
    assert event_reasons(kube, namespace, "web-0") == UPGRADE_EVENTS
    version = pod["metadata"]["resourceVersion"]
    assert upgraded.reconcile(namespace, "web-0") == DONE
    again = kube.get_pod(namespace, "web-0")
    assert again is not None and again["metadata"]["resourceVersion"] == version, "quiet once done"
