"""The upgrade record round-trips and rejects malformed input; patches escape and pin correctly."""

import json
from dataclasses import replace

import jsonpatch
import pytest

from controller.actions import CreatePrePullPod, Event, Fail, WaitFor
from controller.keys import ANNOTATION_UPGRADE
from controller.observed import Seen, agent_view, normalize_image, observe_pod, parent_shutdown_seconds
from controller.patches import annotation_path, patch_for, pointer_token
from controller.policy import ImageAllowlist
from controller.prepull import pre_pull_pod_manifest
from controller.record import (
    InvalidRecordError,
    Phase,
    parse_record,
    record_in,
)
from tests.unit.controller.podfixtures import NEW, OLD, RECORD, STATUS, T0, raw_pod


def test_record_round_trips_with_the_documented_keys() -> None:
    data = json.loads(RECORD.render())
    for key in ("phase", "from", "to", "started", "attempt", "message"):
        assert key in data, f"issue 5 requires {key!r} in the record"
    assert (
        data["from"] == OLD and data["phase"] == "RollingBack" and data["started"] == "2026-11-26T12:00:00Z"
    )
    assert "finished" not in data and "oldContainerID" not in data, "absent optionals are left out"
    assert parse_record(RECORD.render()) == RECORD


def test_what_each_container_ran_before_its_image_change_round_trips() -> None:
    seen = replace(
        RECORD,
        standby_image_id_before="x@sha256:" + "e1" * 32,
        old_container_id="containerd://a1",
        old_restarts_before=2,
        old_image_id_before="sha256:" + "4e" * 32,
        rollback_from_restarts=1,
        rollback_from_image_id="y@sha256:" + "3f" * 32,
    )
    data = json.loads(seen.render())
    assert data["standbyImageIDBefore"].startswith("x@") and data["oldRestartsBefore"] == 2
    assert parse_record(seen.render()) == seen
    assert seen.old_seen == Seen("containerd://a1", 2, "sha256:" + "4e" * 32)
    assert seen.standby_seen == Seen("containerd://b1", 0, "x@sha256:" + "e1" * 32)
    assert seen.rollback_seen == Seen("containerd://b2", 1, "y@sha256:" + "3f" * 32)
    with pytest.raises(InvalidRecordError, match="oldRestartsBefore"):
        parse_record(json.dumps({**data, "oldRestartsBefore": True}))


def test_terminal_move_sets_finished() -> None:
    later = T0.replace(minute=5)
    failed = RECORD.moved(Phase.FAILED, now=later, message="m")
    assert failed.finished == later and failed.phase_since == later and not failed.in_flight
    assert parse_record(failed.render()).finished == later


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("nope", "not JSON"),
        ("[" * 100_000, "not JSON"),  # nested past the parser's recursion limit
        ("[]", "not a JSON object"),
        (json.dumps({**json.loads(RECORD.render()), "version": 2}), "unsupported version"),
        (json.dumps({**json.loads(RECORD.render()), "phase": "Exploded"}), "Exploded"),
        (json.dumps({**json.loads(RECORD.render()), "to": ""}), "'to'"),
        (json.dumps({**json.loads(RECORD.render()), "attempt": 0}), "'attempt'"),
        (json.dumps({**json.loads(RECORD.render()), "started": "yesterday"}), "yesterday"),
        (json.dumps({**json.loads(RECORD.render()), "retryToken": 5}), "'retryToken'"),
        (json.dumps({**json.loads(RECORD.render()), "standbyRestartsBefore": "0"}), "standbyRestartsBefore"),
    ],
)
def test_malformed_record_is_rejected_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(InvalidRecordError, match=why):
        parse_record(raw)


def test_pointer_escaping() -> None:
    assert pointer_token("hotupgrade.io/upgrade") == "hotupgrade.io~1upgrade"
    assert pointer_token("a~b/c") == "a~0b~1c"
    assert annotation_path("x/y") == "/metadata/annotations/x~1y"


def test_fail_with_status_writes_both_annotations_and_nothing_else() -> None:
    pod = raw_pod()
    action = Fail(
        record=RECORD, event=Event("Warning", "UpgradeFailed", "m"), status=STATUS.swapped(sidecar_image=NEW)
    )
    patched = jsonpatch.apply_patch(pod, patch_for(action, "1000"))
    annotations = patched["metadata"]["annotations"]
    assert json.loads(annotations["hotupgrade.io/status"])["active"] == "hotupgrade-b"
    assert parse_record(annotations["hotupgrade.io/upgrade"]) == RECORD
    assert patched["spec"] == pod["spec"]


def test_wait_without_record_patches_nothing() -> None:
    assert patch_for(WaitFor(reason="r", requeue_after=1), "1") == []
    assert patch_for(replace(WaitFor(reason="r", requeue_after=1), record=RECORD), "7")[0]["value"] == "7"


def test_pre_pull_manifest_runs_a_trivial_command_on_the_node() -> None:
    action = CreatePrePullPod(
        pod_name="hotupgrade-prepull-1", node_name="node-1", image=NEW, record=None, requeue_after=1
    )
    manifest = pre_pull_pod_manifest(action, namespace="shop", owner={"name": "web-1", "uid": "u"})
    spec = manifest["spec"]
    assert spec["nodeName"] == "node-1" and spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["image"] == NEW and spec["containers"][0]["command"][-1] == "exit 0"
    assert manifest["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "uid": "u",
    }


def test_allowlist() -> None:
    assert ImageAllowlist().allows("anything")
    allow = ImageAllowlist(
        prefixes=("registry.local/",), patterns=(r"docker\.io/envoyproxy/envoy:v1\.\d+\.\d+",)
    )
    assert allow.allows("registry.local/sidecar:2")
    assert allow.allows("docker.io/envoyproxy/envoy:v1.40.0")
    assert not allow.allows("docker.io/envoyproxy/envoy:v1.40.0-evil")
    assert not allow.allows("evil.example/registry.local/x")


def test_agent_view_parses_the_contract_fields_and_tolerates_junk() -> None:
    view = agent_view(
        "b",
        {
            "slot": "b",
            "role": "active",
            "phase": "serving",
            "epoch": 3,
            "last_error": None,
            "state": {"active_slot": "b", "slots": {"a": {"phase": "retired"}, "b": {"phase": "serving"}}},
        },
    )
    assert view.reachable and (view.role, view.phase, view.epoch, view.active_slot) == (
        "active",
        "serving",
        3,
        "b",
    )
    assert view.slot_phases == {"a": "retired", "b": "serving"}
    junk = agent_view("a", {"role": 5, "epoch": "x", "state": "y"})
    assert junk.reachable and junk.role is None and junk.epoch is None and junk.slot_phases == {}
    assert not agent_view("a", ["not", "a", "dict"]).reachable


def test_observe_pod_reads_native_sidecars_and_waiting_states() -> None:
    pod = raw_pod()
    sidecar = pod["spec"]["containers"].pop(1)
    pod["spec"]["initContainers"] = [{**sidecar, "restartPolicy": "Always"}]
    statuses = pod["status"]["containerStatuses"]
    waiting = {**statuses.pop(1), "state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}}
    pod["status"]["initContainerStatuses"] = [waiting]
    observed = observe_pod(pod, now=T0)
    standby = observed.containers["hotupgrade-b"]
    assert standby.spec_path == "/spec/initContainers/0" and not standby.running
    assert (standby.waiting_reason, standby.waiting_message) == ("ImagePullBackOff", "nope")
    assert observed.containers["app"].spec_path == "/spec/containers/1"
    assert parent_shutdown_seconds(observed.containers["hotupgrade-a"], 900) == 30
    assert parent_shutdown_seconds(observed.containers["app"], 900) == 900


def test_image_names_are_compared_the_way_the_kubelet_reports_them() -> None:
    assert normalize_image("nginx") == normalize_image("docker.io/library/nginx:latest") == "nginx:latest"
    assert normalize_image("docker.io/sidecar-hotupgrade/empty:0.1.0") == "sidecar-hotupgrade/empty:0.1.0"
    assert normalize_image("registry.local:5000/x") == "registry.local:5000/x:latest"
    assert normalize_image("x@sha256:abc") == "x@sha256:abc"
    assert normalize_image("sidecar:1") != normalize_image("sidecar:2")


@pytest.mark.parametrize(
    "event",
    [
        "x",
        {"seq": 0, "type": "Normal", "reason": "R", "message": "m", "posted": False},
        {"seq": 1, "type": "Normal", "reason": "R", "message": "m", "posted": "no"},
        {"seq": 1, "type": "Normal", "reason": 5, "message": "m", "posted": False},
        {"seq": 1, "reason": "R", "message": "m", "posted": False},
    ],
)
def test_malformed_owed_event_is_rejected(event: object) -> None:
    with pytest.raises(InvalidRecordError, match="'event'"):
        parse_record(json.dumps({**json.loads(RECORD.render()), "event": event}))


def test_record_in_reads_the_annotation_and_treats_a_corrupted_one_as_none() -> None:
    assert record_in({ANNOTATION_UPGRADE: RECORD.render()}) == RECORD
    assert record_in({}) is None
    assert record_in({ANNOTATION_UPGRADE: "garbage"}) is None
    assert record_in({ANNOTATION_UPGRADE: json.dumps({**json.loads(RECORD.render()), "version": 9})}) is None
