"""The step machine and the kubelet's crash-loop back-off: upgrades back and forth wait it out before an
image change instead of restarting into it, and a start the kubelet holds anyway is waited for, not
rolled back.

Whole upgrades run against tests/unit/controller/kubeletsim.py, a kubelet written from the upstream
source; the pod is changed only by the machine's own JSON patches (applied with jsonpatch) and the
simulated kubelet's status.
"""

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import jsonpatch

from controller import actions
from controller.actions import Complete, Fail, PatchStandbyImage, ResetOldToEmpty, RollBack, SetImage, WaitFor
from controller.keys import (
    ANNOTATION_ABORT,
    ANNOTATION_KUBELET_BACKOFF,
    ANNOTATION_STATUS,
    ANNOTATION_TARGET_IMAGE,
)
from controller.kubeletbackoff import memory_in
from controller.observed import AgentView, PrePullView, observe_pod
from controller.patches import patch_for
from controller.policy import Policy
from controller.record import Phase, Reason, UpgradeRecord, record_in
from controller.steps import next_step
from tests.unit.controller.kubeletsim import Entry, Kubelet
from tests.unit.controller.podfixtures import ADMITTED, EMPTY, NEW, OLD, T0, agent, raw_pod, unreachable
from webhook.injection_status import parse_status

PAIR = ("hotupgrade-a", "hotupgrade-b")
POLICY = Policy(step_timeout=120, drain_grace=30, poll_interval=1, pre_pull=False)
DRAIN_SECONDS = 5.0  # how long the old Envoy drains in these runs


def agents_for(kubelet: Kubelet, now: datetime) -> dict[str, AgentView]:
    """What the two agents would answer, from the pod's record and the containers the kubelet runs."""
    annotations = kubelet.pod["metadata"]["annotations"]
    status = parse_status(annotations[ANNOTATION_STATUS])
    record = record_in(annotations)
    active, standby = status.slots[status.active], status.slots[status.standby]
    serving = {
        active: agent(
            active, "active", "serving", active=active, slots={active: "serving", standby: "standby"}
        ),
        standby: unreachable(standby),
    }
    if record is None or record.phase not in (Phase.TAKING_OVER, Phase.DRAINING, Phase.RESETTING):
        return serving
    new, old = record.new_slot, record.old_slot
    if record.phase is Phase.TAKING_OVER and not kubelet.runs(record.new_container, record.to_image):
        return serving
    drained = (now - record.phase_since).total_seconds() > DRAIN_SECONDS or record.phase is Phase.RESETTING
    phases = {old: "retired" if drained else "draining", new: "serving"}
    return {
        new: agent(new, "active", "serving", active=new, slots=phases, epoch=1),
        old: unreachable(old) if drained else agent(old, "retired", "draining", active=new, slots=phases),
    }


def apply(kubelet: Kubelet, ops: list[dict[str, Any]]) -> None:
    pod = kubelet.pod
    patched: dict[str, Any] = jsonpatch.apply_patch(pod, ops)
    patched["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
    kubelet.pod = patched


def upgrade(
    kubelet: Kubelet,
    target: str,
    now: datetime,
    policy: Policy = POLICY,
    *,
    agents: Callable[[Kubelet, datetime], dict[str, AgentView]] = agents_for,
) -> tuple[UpgradeRecord, float, datetime]:
    """Annotate the target and run the machine (requeue by requeue) to a terminal record: (record,
    seconds spent waiting out the kubelet's back-off, the time it ended). `agents`: what they answer."""
    kubelet.pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = target
    waited = 0.0
    for _ in range(3000):
        kubelet.sync(now)
        observed = observe_pod(kubelet.pod, now=now, agents=agents(kubelet, now), budget=ADMITTED)
        action = next_step(observed, policy)
        assert isinstance(action, SetImage | WaitFor | Complete | Fail), action
        apply(kubelet, patch_for(action, kubelet.pod["metadata"]["resourceVersion"]))
        if isinstance(action, Complete | Fail):
            kubelet.sync(now)
            return action.record, waited, now
        step = action.requeue_after
        if isinstance(action, WaitFor) and action.hold is not None:
            waited += step
        now += timedelta(seconds=max(step, 0.25))
    raise AssertionError("the upgrade never ended")


def fresh_kubelet() -> Kubelet:
    """Slot a serves OLD, slot b runs the empty image, both since an hour before T0; no upgrade yet."""
    return Kubelet.running(raw_pod(target=None), PAIR, since=T0 - timedelta(hours=1))


def test_four_upgrades_back_to_back_wait_out_the_back_off_and_complete() -> None:
    """The field fault: the 4th upgrade sets slot a to OLD again, which it started in the 2nd, seconds
    after the 3rd reset it: the kubelet would hold that start (CrashLoopBackOff) and the controller used to
    roll back. Now it waits the rest of the back-off first, and the kubelet never holds a start."""
    kubelet, now, waits = fresh_kubelet(), T0, []
    for target in (NEW, OLD, NEW, OLD):
        record, waited, now = upgrade(kubelet, target, now)
        assert record.phase is Phase.COMPLETED, record.message
        assert kubelet.back_offs == [], "the kubelet held a start the controller made"
        waits.append(waited)
        now += timedelta(seconds=1)
    assert waits[:3] == [0.0, 0.0, 0.0], waits
    # Slot a's last exit was the 3rd upgrade's reset, a few seconds before: the rest of 10 s (+ margin).
    assert 2.0 < waits[3] <= 12.0, waits


def test_ten_upgrades_back_to_back_all_complete_with_growing_waits() -> None:
    kubelet, now, waits = fresh_kubelet(), T0, []
    policy = replace(POLICY, step_timeout=300)
    for target in (NEW, OLD) * 5:
        record, waited, now = upgrade(kubelet, target, now, policy)
        assert record.phase is Phase.COMPLETED, record.message
        waits.append(waited)
    assert kubelet.back_offs == []
    # Each slot restarts the same two images every other upgrade: the kubelet doubles their back-off.
    assert waits[5] > waits[3] > 0 and waits[9] > waits[7] > waits[5], waits


def test_a_start_the_kubelet_holds_anyway_is_waited_for_not_rolled_back() -> None:
    """Without the memory (lost, or written by an older controller) the 4th upgrade restarts into the
    back-off: the new container waits in CrashLoopBackOff with the replaced instance as its lastState.
    That is the kubelet's back-off for the container and image, not a crash: wait, then complete."""
    kubelet, now = fresh_kubelet(), T0
    for target in (NEW, OLD, NEW):
        record, _, now = upgrade(kubelet, target, now)
        assert record.phase is Phase.COMPLETED, record.message
    del kubelet.pod["metadata"]["annotations"][ANNOTATION_KUBELET_BACKOFF]
    record, waited, now = upgrade(kubelet, OLD, now + timedelta(seconds=1))
    assert record.phase is Phase.COMPLETED, record.message
    assert waited == 0.0, "nothing foreseen"
    assert [(c, i) for c, i, _ in kubelet.back_offs] == [("hotupgrade-a", OLD)], "the kubelet held it"


def held_pod(**changes: Any) -> dict[str, Any]:
    """Slot b's standby swap to NEW, held by the kubelet: Waiting CrashLoopBackOff, lastState the replaced
    empty container b1 (restartCount unchanged), as kubelet_pods.go shows a held start."""
    kubelet = fresh_kubelet()
    pod = kubelet.pod
    pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = NEW
    action = next_step(observe_pod(pod, now=T0, agents=agents_for(kubelet, T0), budget=ADMITTED), POLICY)
    assert isinstance(action, PatchStandbyImage)
    apply(kubelet, patch_for(action, pod["metadata"]["resourceVersion"]))
    replaced = kubelet.instances["hotupgrade-b"][-1]
    status = next(s for s in kubelet.pod["status"]["containerStatuses"] if s["name"] == "hotupgrade-b")
    status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed"}}
    status["lastState"] = {"terminated": {"containerID": replaced.cid, "finishedAt": "2026-11-26T12:00:00Z"}}
    status.update(changes)
    return kubelet.pod


def test_crash_loop_back_off_of_a_target_that_never_ran_waits_with_one_record_write() -> None:
    pod = held_pod()
    agents = {"a": agent("a", "active", "serving"), "b": unreachable("b")}
    first = next_step(observe_pod(pod, now=T0 + timedelta(seconds=3), agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(first, WaitFor) and first.record is not None, first
    assert "not rolling back" in first.record.message and first.record.phase is Phase.TAKING_OVER
    assert first.event is not None and first.event.reason == "WaitingForKubeletBackOff"
    assert "back-off 10s restarting failed" in first.event.message
    written: dict[str, Any] = jsonpatch.apply_patch(pod, patch_for(first, "1000"))
    again = next_step(
        observe_pod(written, now=T0 + timedelta(seconds=4), agents=agents, budget=ADMITTED), POLICY
    )
    assert isinstance(again, WaitFor) and again.record is None, "said once"
    late = next_step(
        observe_pod(written, now=T0 + timedelta(seconds=121), agents=agents, budget=ADMITTED), POLICY
    )
    assert isinstance(late, RollBack) and late.record.reason is Reason.TAKE_OVER_TIMEOUT, late
    assert "still held in the kubelet's crash-loop back-off" in late.record.message
    # Once the target ran (restartCount 1) and crashed, its own instance is the lastState: a failure.
    crashed = held_pod(restartCount=1, containerID="containerd://b9")
    status = next(s for s in crashed["status"]["containerStatuses"] if s["name"] == "hotupgrade-b")
    status["lastState"]["terminated"]["containerID"] = "containerd://b9"
    action = next_step(
        observe_pod(crashed, now=T0 + timedelta(seconds=3), agents=agents, budget=ADMITTED), POLICY
    )
    assert isinstance(action, RollBack) and action.record.reason is Reason.CONTAINER_FAILED, action


def back_off_pod(*, backoff: float, exited_ago: float, started_ago: float) -> dict[str, Any]:
    """Slot b (standby, empty image) started NEW `started_ago` s before T0, back-off `backoff` s; its last
    exit was `exited_ago` s before T0."""
    pod = raw_pod()
    since = T0 - timedelta(seconds=started_ago)
    memory = {
        "starts": [
            {"container": "hotupgrade-b", "image": NEW, "backoff": backoff, "since": _stamp(since)},
        ],
        "crashes": {},
    }
    pod["metadata"]["annotations"][ANNOTATION_KUBELET_BACKOFF] = json.dumps(memory)
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "hotupgrade-b")
    exited = T0 - timedelta(seconds=exited_ago)
    status["restartCount"] = 2
    status["lastState"] = {"terminated": {"containerID": "containerd://b0", "finishedAt": _stamp(exited)}}
    pod["metadata"]["annotations"]["hotupgrade.io/planned-restarts"] = '{"hotupgrade-b": 2}'
    return pod


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


SERVING = {
    "a": agent("a", "active", "serving", slots={"a": "serving", "b": "standby"}),
    "b": unreachable("b"),
}


def test_the_standby_swap_waits_for_the_back_off_then_patches() -> None:
    pod = back_off_pod(backoff=20, exited_ago=5, started_ago=40)
    action = next_step(observe_pod(pod, now=T0, agents=SERVING, budget=ADMITTED), POLICY)
    assert isinstance(action, WaitFor) and action.hold is not None, action
    assert action.hold.seconds == 17.0 and action.requeue_after == 17.0  # 20 s + 2 s margin - 5 s
    assert action.reason == (
        f"waiting 17.0 s for the kubelet's crash-loop back-off on hotupgrade-b ({NEW} started there 40 s ago)"
    )
    assert action.record is not None and action.record.phase is Phase.PENDING
    assert action.record.message.startswith("waiting until 2026-11-26T12:00:17Z for the kubelet's")
    assert action.event is not None and action.event.reason == "WaitingForKubeletBackOff"
    written: dict[str, Any] = jsonpatch.apply_patch(pod, patch_for(action, "1000"))
    still = next_step(
        observe_pod(written, now=T0 + timedelta(seconds=10), agents=SERVING, budget=ADMITTED), POLICY
    )
    assert isinstance(still, WaitFor) and still.record is None and still.requeue_after == 7.0
    go = next_step(
        observe_pod(written, now=T0 + timedelta(seconds=17), agents=SERVING, budget=ADMITTED), POLICY
    )
    assert isinstance(go, PatchStandbyImage), go
    assert go.kubelet_backoff is not None
    entry = go.kubelet_backoff.entry("hotupgrade-b", NEW)
    assert entry is not None and entry.backoff == 40.0, "the kubelet doubles it on this start"


def test_the_pre_pulled_swap_waits_too() -> None:
    pod = back_off_pod(backoff=20, exited_ago=5, started_ago=40)
    first = next_step(
        observe_pod(pod, now=T0, agents=SERVING, budget=ADMITTED), replace(POLICY, pre_pull=True)
    )
    assert isinstance(first, actions.CreatePrePullPod) and first.record is not None
    pulling: dict[str, Any] = jsonpatch.apply_patch(pod, patch_for(first, "1000"))
    done = PrePullView(exists=True, phase="Succeeded", terminated_reason="Completed", exit_code=0)
    observed = observe_pod(
        pulling, now=T0 + timedelta(seconds=3), agents=SERVING, pre_pull=done, budget=ADMITTED
    )
    action = next_step(observed, replace(POLICY, pre_pull=True))
    assert isinstance(action, WaitFor) and action.hold is not None and action.hold.seconds == 14.0, action
    assert action.record is not None and action.record.phase is Phase.PRE_PULLING


def test_a_back_off_longer_than_the_step_timeout_fails_untouched() -> None:
    pod = back_off_pod(backoff=300, exited_ago=5, started_ago=40)
    action = next_step(observe_pod(pod, now=T0, agents=SERVING, budget=ADMITTED), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.KUBELET_BACK_OFF, action
    assert "297s" in action.record.message and "standby untouched" in action.record.message


def test_only_a_live_entry_holds() -> None:
    live = back_off_pod(backoff=20, exited_ago=5, started_ago=500)
    assert isinstance(next_step(observe_pod(live, now=T0, agents=SERVING, budget=ADMITTED), POLICY), WaitFor)
    # Gone: the kubelet's GC dropped it (more than 600 s, plus slack, since its start).
    gone = back_off_pod(backoff=300, exited_ago=5, started_ago=700)
    assert isinstance(
        next_step(observe_pod(gone, now=T0, agents=SERVING, budget=ADMITTED), POLICY), PatchStandbyImage
    )
    # Past: the last exit is longer ago than the back-off.
    past = back_off_pod(backoff=20, exited_ago=25, started_ago=40)
    assert isinstance(
        next_step(observe_pod(past, now=T0, agents=SERVING, budget=ADMITTED), POLICY), PatchStandbyImage
    )


def test_the_reset_waits_for_the_back_off_of_the_empty_image() -> None:
    """Slot b started the empty image in an upgrade half a minute ago (back-off now 40 s) and serves
    since: the next upgrade's reset of b to the empty image waits out the rest."""
    kubelet, now = fresh_kubelet(), T0
    record, _, now = upgrade(kubelet, NEW, now)
    assert record.phase is Phase.COMPLETED
    since = now - timedelta(seconds=30)
    kubelet.entries[("hotupgrade-b", record.empty_image)] = Entry(40.0, since)
    kubelet.pod["metadata"]["annotations"][ANNOTATION_KUBELET_BACKOFF] = json.dumps(
        {
            "starts": [
                {
                    "container": "hotupgrade-b",
                    "image": record.empty_image,
                    "backoff": 40,
                    "since": _stamp(since),
                }
            ]
        }
    )
    record, waited, now = upgrade(kubelet, OLD, now + timedelta(seconds=1))
    assert record.phase is Phase.COMPLETED, record.message
    assert waited > 0 and kubelet.back_offs == [], (waited, kubelet.back_offs)


def test_the_memory_matches_the_kubelets_entries() -> None:
    """After every upgrade the annotation holds exactly the kubelet's entries the controller caused: the
    same back-off, stamped no later than the kubelet's lastUpdate."""
    kubelet, now = fresh_kubelet(), T0
    for target in (NEW, OLD) * 3:
        record, _, now = upgrade(kubelet, target, now, replace(POLICY, step_timeout=300))
        assert record.phase is Phase.COMPLETED, record.message
        memory = memory_in(kubelet.pod["metadata"]["annotations"])
        remembered = {(e.container, e.image): e for e in memory.entries}
        assert set(remembered) == set(kubelet.entries), (remembered, kubelet.entries)
        for key, entry in kubelet.entries.items():
            assert remembered[key].backoff == entry.backoff, key
            assert timedelta(0) <= entry.last_update - remembered[key].since < timedelta(seconds=2), key
        assert memory.crashes == {"hotupgrade-a": 0, "hotupgrade-b": 0}


def test_every_image_change_writes_the_memory_in_the_same_patch() -> None:
    kubelet = fresh_kubelet()
    pod = kubelet.pod
    pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = NEW
    action = next_step(observe_pod(pod, now=T0, agents=agents_for(kubelet, T0), budget=ADMITTED), POLICY)
    assert isinstance(action, SetImage)
    paths = [op["path"] for op in patch_for(action, "1000")]
    memory_path = "/metadata/annotations/hotupgrade.io~1kubelet-backoff"
    assert memory_path in paths and paths.index(memory_path) > paths.index("/spec/containers/1/image")
    # Slot b never exited (its first container): the kubelet calls no Next, nothing to remember.
    assert action.kubelet_backoff is not None and action.kubelet_backoff.entries == ()


def retired(backoff: float) -> tuple[dict[str, Any], datetime]:
    """An upgrade a -> b run up to the reset (the old Envoy in slot a retired), with slot a's memory and
    status changed: it started the empty image 60 s before T0 (back-off `backoff` s) and last exited 5 s
    ago. Returns the pod and now."""
    kubelet, now = fresh_kubelet(), T0
    kubelet.pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = NEW
    for _ in range(100):
        kubelet.sync(now)
        action = next_step(
            observe_pod(kubelet.pod, now=now, agents=agents_for(kubelet, now), budget=ADMITTED), POLICY
        )
        if isinstance(action, SetImage) and action.container == "hotupgrade-a":
            break  # the reset, not carried out
        assert isinstance(action, SetImage | WaitFor), action
        apply(kubelet, patch_for(action, kubelet.pod["metadata"]["resourceVersion"]))
        now += timedelta(seconds=max(action.requeue_after, 0.25))
    pod = kubelet.pod
    since = _stamp(T0 - timedelta(seconds=60))
    start = {"container": "hotupgrade-a", "image": EMPTY, "backoff": backoff, "since": since}
    pod["metadata"]["annotations"][ANNOTATION_KUBELET_BACKOFF] = json.dumps({"starts": [start]})
    status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "hotupgrade-a")
    exited = _stamp(now - timedelta(seconds=5))
    status["lastState"] = {"terminated": {"containerID": "containerd://a0", "finishedAt": exited}}
    return pod, now


def test_a_reset_waits_within_the_step_timeout_and_goes_ahead_past_it() -> None:
    agents = {
        "a": unreachable("a"),
        "b": agent("b", "active", "serving", active="b", slots={"a": "retired", "b": "serving"}, epoch=1),
    }
    pod, now = retired(20.0)
    record = record_in(pod["metadata"]["annotations"])
    assert record is not None and record.phase is Phase.DRAINING
    action = next_step(observe_pod(pod, now=now, agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(action, WaitFor) and action.hold is not None, action
    assert 16.0 <= action.hold.seconds <= 17.0, "20 s + 2 s from an exit 5 s ago (truncated to the second)"
    assert action.record is not None and "before setting it to the empty image" in action.record.message
    # 300 s would outlast the step timeout (120 s): the new Envoy serves, so the reset goes ahead.
    pod, now = retired(300.0)
    action = next_step(observe_pod(pod, now=now, agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(action, ResetOldToEmpty), action


def failing(target: str) -> Callable[[Kubelet, datetime], dict[str, AgentView]]:
    """Agents as `agents_for`, but the agent of a container running `target` fails its take-over and
    stays up (agent/hook.py): the old slot serves on."""

    def agents(kubelet: Kubelet, now: datetime) -> dict[str, AgentView]:
        record = record_in(kubelet.pod["metadata"]["annotations"])
        if record is None or record.phase is not Phase.TAKING_OVER:
            return agents_for(kubelet, now)
        if not kubelet.runs(record.new_container, target):
            return agents_for(kubelet, now)
        old, new = record.old_slot, record.new_slot
        slots = {old: "serving", new: "failed"}
        error = "Envoy epoch 2 was not LIVE 10.0s after its spawn (take-over deadline 10s)"
        return {
            old: agent(old, "active", "serving", active=old, slots=slots),
            new: agent(new, "standby", "failed", active=old, slots=slots, last_error=error),
        }

    return agents


def test_a_failed_take_over_rolls_back_without_the_kubelet_holding_the_empty_image() -> None:
    """Slot b started the empty image in the 2nd upgrade (the kubelet's entry: 10 s); the 3rd sets it to
    NEW, whose agent fails at once and stays up. Rolling back at once would restart the empty image
    within that back-off, after the kill of the failed container: CrashLoopBackOff, the pod NotReady. The
    rollback waits the rest out while the failed container runs (the pod Ready), then goes ahead."""
    kubelet, now = fresh_kubelet(), T0
    for target in (NEW, OLD):
        record, _, now = upgrade(kubelet, target, now)
        assert record.phase is Phase.COMPLETED, record.message
    assert kubelet.entries[("hotupgrade-b", EMPTY)].backoff == 10.0
    record, waited, now = upgrade(kubelet, NEW, now + timedelta(seconds=1), agents=failing(NEW))
    assert record.phase is Phase.FAILED and record.reason is Reason.AGENT_FAILED, record
    assert record.message.endswith("rolled back"), record.message
    assert "take-over deadline" in record.message
    assert kubelet.back_offs == [], "the kubelet held the rollback's start: the pod went NotReady"
    assert 0 < waited <= 12.0, waited
    assert kubelet.runs("hotupgrade-b", EMPTY)
    assert kubelet.pod["status"]["conditions"] == [{"type": "Ready", "status": "True"}]


def test_a_rollback_does_not_wait_for_a_target_container_that_is_not_running() -> None:
    """The failed container already exited (the kubelet holds its restart): the pod is NotReady anyway,
    so the rollback goes ahead at once rather than wait."""
    kubelet, now = fresh_kubelet(), T0
    for target in (NEW, OLD):
        record, _, now = upgrade(kubelet, target, now)
        assert record.phase is Phase.COMPLETED, record.message
    kubelet.pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = NEW
    for _ in range(100):
        kubelet.sync(now)
        observed = observe_pod(kubelet.pod, now=now, agents=failing(NEW)(kubelet, now), budget=ADMITTED)
        action = next_step(observed, POLICY)
        written = action.record.message if isinstance(action, WaitFor) and action.record else ""
        if isinstance(action, WaitFor) and action.hold is not None and "rolling it back" in written:
            break
        assert isinstance(action, SetImage | WaitFor), action
        apply(kubelet, patch_for(action, kubelet.pod["metadata"]["resourceVersion"]))
        now += timedelta(seconds=max(action.requeue_after, 0.25))
    else:
        raise AssertionError("the rollback never waited")
    assert isinstance(action, WaitFor) and action.record is not None
    assert "before rolling it back to the empty image (AgentFailed: agent of slot b failed" in (
        action.record.message
    )
    assert action.event is not None and action.event.reason == "WaitingForKubeletBackOff"
    status = next(s for s in kubelet.pod["status"]["containerStatuses"] if s["name"] == "hotupgrade-b")
    status["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": _stamp(now)}}
    unreachable_b = {**failing(NEW)(kubelet, now), "b": unreachable("b")}
    action = next_step(observe_pod(kubelet.pod, now=now, agents=unreachable_b, budget=ADMITTED), POLICY)
    assert isinstance(action, RollBack), action


def until_the_target_runs(kubelet: Kubelet, target: str, now: datetime) -> tuple[UpgradeRecord, datetime]:
    """Set `target` and drive the steps until slot b runs it while the record is TakingOver: the record
    and the time then. AssertionError when that never happens."""
    kubelet.pod["metadata"]["annotations"][ANNOTATION_TARGET_IMAGE] = target
    for _ in range(100):
        kubelet.sync(now)
        record = record_in(kubelet.pod["metadata"]["annotations"])
        if record is not None and record.phase is Phase.TAKING_OVER and kubelet.runs("hotupgrade-b", target):
            return record, now
        observed = observe_pod(kubelet.pod, now=now, agents=agents_for(kubelet, now), budget=ADMITTED)
        action = next_step(observed, POLICY)
        assert isinstance(action, SetImage | WaitFor), action
        apply(kubelet, patch_for(action, kubelet.pod["metadata"]["resourceVersion"]))
        now += timedelta(seconds=max(action.requeue_after, 0.25))
    raise AssertionError("the target never ran")


def test_a_failed_agent_is_rolled_back_only_once_the_status_shows_its_container() -> None:
    """The kubelet publishes the pod status when a sync starts; the sync that started the target sat in
    its postStart hook until the agent failed, so the status may still show the instance from before the
    swap. Rolling back on it would record that instance as the one to replace and take the target's own
    instance, once reported, for the rollback's fresh container: the controller waits for the status."""
    kubelet, now = fresh_kubelet(), T0
    record, now = until_the_target_runs(kubelet, NEW, now)
    assert record.standby_seen.container_id is not None
    agents = failing(NEW)(kubelet, now)
    stale = json.loads(json.dumps(kubelet.pod))
    status = next(s for s in stale["status"]["containerStatuses"] if s["name"] == "hotupgrade-b")
    status.update(
        containerID=record.standby_seen.container_id,
        image=EMPTY,
        imageID=f"{EMPTY}@sha256:{abs(hash(EMPTY)):x}",
        restartCount=0,
    )
    status.pop("lastState", None)
    waiting = next_step(observe_pod(stale, now=now, agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is None, waiting
    assert waiting.reason == "agent of slot b failed; waiting for the kubelet to report its container"
    rolled = next_step(observe_pod(kubelet.pod, now=now, agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(rolled, RollBack), rolled
    target_id = next(
        s["containerID"] for s in kubelet.pod["status"]["containerStatuses"] if s["name"] == "hotupgrade-b"
    )
    assert rolled.record is not None and rolled.record.rollback_from_id == target_id
    # A kubelet that never reports it: the step timeout ends the wait, and the rollback goes ahead.
    late = now + timedelta(seconds=POLICY.step_timeout + 1)
    action = next_step(observe_pod(stale, now=late, agents=agents, budget=ADMITTED), POLICY)
    assert isinstance(action, RollBack), action


def test_an_abort_rolls_back_at_once_even_where_a_failed_agent_would_wait_out_the_back_off() -> None:
    """The wait before a rollback is for a failed agent only: a target still starting could take the
    listeners meanwhile, so an abort rolls it back at once, back-off or not."""
    kubelet, now = fresh_kubelet(), T0
    for target in (NEW, OLD):
        done, _, now = upgrade(kubelet, target, now)
        assert done.phase is Phase.COMPLETED, done.message
    _, now = until_the_target_runs(kubelet, NEW, now)
    failed = failing(NEW)(kubelet, now)
    held = next_step(observe_pod(kubelet.pod, now=now, agents=failed, budget=ADMITTED), POLICY)
    assert isinstance(held, WaitFor) and held.hold is not None, "a failed agent's rollback waits here"
    starting = {**failed, "b": agent("b", "standby", "starting", slots={"a": "serving", "b": "starting"})}
    kubelet.pod["metadata"]["annotations"][ANNOTATION_ABORT] = "abort-1"
    action = next_step(observe_pod(kubelet.pod, now=now, agents=starting, budget=ADMITTED), POLICY)
    assert isinstance(action, RollBack) and action.record is not None, action
    assert action.record.reason is Reason.ABORTED
