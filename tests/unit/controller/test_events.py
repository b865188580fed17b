"""Events owed by the upgrade record: numbering, the fixed name, the posted mark, the Event body."""

import json
from dataclasses import replace

import jsonpatch

from controller.actions import Event
from controller.events import (
    MESSAGE_LIMIT,
    due,
    event_name,
    manifest,
    owed_by,
    owing,
    posted,
    posted_patch,
    withdrawal_manifest,
)
from controller.keys import ANNOTATION_UPGRADE
from controller.record import OwedEvent, parse_record
from tests.unit.controller.podfixtures import RECORD, T0, raw_pod


def test_record_written_before_owed_events_owes_nothing() -> None:
    old = json.loads(RECORD.render())
    assert "event" not in old, "what every record looked like before owed Events"
    parsed = parse_record(json.dumps(old))
    assert parsed.event is None and due(parsed) is None
    assert posted(parsed) == parsed


def test_owed_event_round_trips_and_is_numbered_per_attempt() -> None:
    first = owing(RECORD, Event("Warning", "UpgradeFailed", "rolling back"))
    assert first.event == OwedEvent(seq=1, type="Warning", reason="UpgradeFailed", message="rolling back")
    assert parse_record(first.render()) == first
    marked = posted(first)
    assert due(marked) is None and parse_record(marked.render()) == marked
    second = owing(marked, Event("Normal", "RolledBack", "back"))
    assert due(second) == OwedEvent(seq=2, type="Normal", reason="RolledBack", message="back")


def test_event_name_is_fixed_per_attempt_and_step_and_unique_otherwise() -> None:
    record = owing(RECORD, Event("Normal", "UpgradeStarted", "m"))
    name = event_name(record, pod_name="web-1", pod_uid="u1")
    assert name == event_name(record, pod_name="web-1", pod_uid="u1"), "a re-post collides: AlreadyExists"
    assert name.startswith("web-1.")
    others = {
        event_name(owing(record, Event("Normal", "TakenOver", "m")), pod_name="web-1", pod_uid="u1"),
        event_name(replace(record, attempt=3), pod_name="web-1", pod_uid="u1"),
        event_name(replace(record, to_image="registry.local/x:9"), pod_name="web-1", pod_uid="u1"),
        event_name(record, pod_name="web-1", pod_uid="u2"),  # same name, recreated pod
        # seq 1 again after an older controller rewrote the record without `event`
        event_name(owing(RECORD, Event("Normal", "Drained", "m")), pod_name="web-1", pod_uid="u1"),
    }
    assert name not in others and len(others) == 5
    assert len(event_name(record, pod_name="p" * 253, pod_uid="u1")) <= 253


def test_the_posted_mark_pins_the_pod_and_only_flips_posted() -> None:
    owes = owing(RECORD, Event("Normal", "TakenOver", "m"))
    pod = raw_pod(record=owes)
    ops = posted_patch(owes, "1000")
    assert ops[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "1000"}
    patched = jsonpatch.apply_patch(pod, ops)
    assert parse_record(patched["metadata"]["annotations"]["hotupgrade.io/upgrade"]) == posted(owes)
    patched["metadata"]["annotations"]["hotupgrade.io/upgrade"] = owes.render()
    assert patched == pod, "nothing else changes"


def test_owed_by_names_what_the_pods_record_owes_and_nothing_else() -> None:
    owes = owing(RECORD, Event("Normal", "Drained", "m"))
    pod = raw_pod(record=owes)
    found = owed_by(pod)
    assert found is not None and found.record == owes and found.event == due(owes)
    assert found.name == event_name(owes, pod_name="web-1", pod_uid=pod["metadata"]["uid"])
    assert owed_by(raw_pod(record=posted(owes))) is None, "posted: nothing owed"
    assert owed_by(raw_pod(record=RECORD)) is None, "a record from before owed Events"
    assert owed_by(raw_pod(record=None)) is None
    pod["metadata"]["annotations"][ANNOTATION_UPGRADE] = "garbage"
    assert owed_by(pod) is None


def test_the_event_body_names_the_pod_its_writer_and_stays_within_the_message_limit() -> None:
    pod = raw_pod()
    owed = OwedEvent(seq=1, type="Warning", reason="UpgradeFailed", message="x" * 5000)
    body = manifest(pod, owed, name="web-1.abc", now=T0, component="hotupgrade-controller")
    assert body["metadata"] == {"name": "web-1.abc", "namespace": "shop"}
    assert body["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-1",
        "namespace": "shop",
        "uid": pod["metadata"]["uid"],
        "resourceVersion": "1000",
    }
    assert (body["type"], body["reason"], len(body["message"])) == ("Warning", "UpgradeFailed", MESSAGE_LIMIT)
    assert body["source"] == {"component": "hotupgrade-controller"}
    assert body["reportingComponent"] == "hotupgrade-controller"
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2026-11-26T12:00:00Z" and body["count"] == 1
    assert json.loads(json.dumps(body)) == body, "plain JSON, as the raw client sends it"


def test_a_withdrawal_event_is_named_by_the_write_it_follows() -> None:
    pod = {"namespace": "shop", "name": "web-1", "uid": "u-1", "resourceVersion": "42"}
    body = withdrawal_manifest(pod, image="img:2", message="withdrawn", now=T0, component="ctl")
    assert (body["type"], body["reason"], body["message"]) == ("Normal", "UpgradeWithdrawn", "withdrawn")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", **pod}
    again = withdrawal_manifest(pod, image="img:2", message="other words", now=T0, component="ctl")
    later = withdrawal_manifest(
        {**pod, "resourceVersion": "57"}, image="img:2", message="x", now=T0, component="c"
    )
    assert body["metadata"]["name"] == again["metadata"]["name"] != later["metadata"]["name"]
    assert body["metadata"]["name"].startswith("web-1.")
