"""What a release reconcile posts and measures besides its status: Events per batch, per failed pod and per
condition transition, each named once per occurrence; the rollout duration; the target patch."""

from dataclasses import replace
from datetime import timedelta

from controller.keys import ANNOTATION_TARGET_IMAGE
from controller.patches import annotation_path, target_patch
from controller.record import Phase, Reason
from controller.release_events import (
    NORMAL,
    WARNING,
    ReleaseEvent,
    batch_event,
    event_name,
    failure_events,
    involved_object,
    rollout_seconds,
    transition_events,
)
from controller.rollout import PodFacts, plan_fleet
from releaseapi.release import (
    API_VERSION,
    KIND,
    Condition,
    ConditionType,
    Release,
    ReleaseSpec,
    ReleaseStatus,
    Strategy,
)
from releaseapi.selector import LabelSelector, Requirement
from tests.unit.controller.podfixtures import NEW, STATUS, T0, upgrade_record

WEB = LabelSelector((Requirement("app", "==", frozenset({"web"})),))


def release(*, status: ReleaseStatus | None = None, **strategy: object) -> Release:
    spec = ReleaseSpec(selector=WEB, image=NEW, strategy=Strategy(**strategy))  # type: ignore[arg-type]
    return Release(name="web", generation=3, spec=spec, status=status or ReleaseStatus())


def pod(name: str, **changes: object) -> PodFacts:
    base = PodFacts(namespace="shop", name=name, labels={"app": "web"}, ready=True, status=STATUS)
    return replace(base, **changes)  # type: ignore[arg-type]


def failed(name: str, attempt: int = 1) -> PodFacts:
    record = upgrade_record(
        phase=Phase.FAILED, attempt=attempt, reason=Reason.TAKE_OVER_TIMEOUT, message="no take-over in 300s"
    )
    return pod(name, target=NEW, record=record)


def test_a_batch_event_names_the_started_pods_and_the_budget() -> None:
    r = release(max_unavailable=Strategy().max_unavailable)
    plan = plan_fleet([r], [pod("web-0"), pod("web-1")], {}, now=T0).releases["web"]
    event = batch_event(r, plan, now=T0)
    assert event is not None and (event.type, event.reason) == (NORMAL, "BatchStarted")
    assert event.message == (
        f"started 1 upgrade(s) to {NEW}: shop/web-0; 0 unavailable before, maxUnavailable 1"
    )
    later = batch_event(r, plan, now=T0 + timedelta(seconds=5))
    assert later is not None and later.identity != event.identity, "the next batch is another Event"
    assert batch_event(r, replace(plan, starts=()), now=T0) is None


def test_retargeted_pods_are_said_so() -> None:
    r = release()
    queued = pod("web-0", target="registry.local/hotupgrade-sidecar:9")
    plan = plan_fleet([r], [queued], {}, now=T0).releases["web"]
    event = batch_event(r, plan, now=T0)
    assert event is not None and "(1 retargeted from another image)" in event.message


def test_each_failed_pod_is_one_warning_per_attempt() -> None:
    r = release(max_failures=5)
    pods = [failed("web-0"), failed("web-1"), pod("web-2", status=replace(STATUS, sidecar_image=NEW))]
    plan = plan_fleet([r], pods, {}, now=T0).releases["web"]
    events = failure_events(r, plan, {p.key: p for p in pods})
    assert [(e.type, e.reason) for e in events] == [(WARNING, "PodUpgradeFailed")] * 2
    assert events[0].message == (
        f"pod shop/web-0 failed to upgrade to {NEW}: TakeOverTimeout: no take-over in 300s"
    )
    again = failed("web-0", attempt=2)
    plan2 = plan_fleet([r], [again], {}, now=T0).releases["web"]
    (retried,) = failure_events(r, plan2, {again.key: again})
    assert retried.identity != events[0].identity, "a retry that fails again is told again"


def cond(kind: ConditionType, status: bool, reason: str, at: int = 0) -> Condition:
    return Condition(kind, status, reason, f"{reason} message", T0 + timedelta(seconds=at), 3)


def status(*conditions: Condition) -> ReleaseStatus:
    return ReleaseStatus(observed_generation=3, conditions=conditions)


def reasons(events: list[ReleaseEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in events]


def test_transitions_are_told_once_each() -> None:
    running = status(
        cond(ConditionType.PAUSED, False, "NotPaused"),
        cond(ConditionType.COMPLETE, False, "PodsRemaining"),
        cond(ConditionType.DEGRADED, False, "NoFailures"),
    )
    paused = status(
        cond(ConditionType.PAUSED, True, "PausedBySpec", 10),
        cond(ConditionType.COMPLETE, False, "PodsRemaining"),
        cond(ConditionType.DEGRADED, False, "NoFailures"),
    )
    assert reasons(transition_events(running, paused)) == [(NORMAL, "RolloutPaused")]
    assert transition_events(paused, paused) == [], "no change, no Event"
    too_many = replace(
        paused,
        conditions=(
            cond(ConditionType.PAUSED, True, "TooManyFailures", 20),
            cond(ConditionType.COMPLETE, False, "UpgradesFailed"),
            cond(ConditionType.DEGRADED, True, "TooManyFailures", 20),
        ),
    )
    # Paused for another reason is news (and a warning); Degraded by failures has per-pod Events already.
    assert reasons(transition_events(paused, too_many)) == [(WARNING, "RolloutPaused")]
    assert reasons(transition_events(too_many, running)) == [(NORMAL, "RolloutResumed")]
    complete = replace(running, conditions=(cond(ConditionType.COMPLETE, True, "AllPodsUpdated", 90),))
    (done,) = transition_events(running, complete)
    assert (done.reason, done.message) == ("RolloutComplete", "AllPodsUpdated: AllPodsUpdated message")
    invalid = status(cond(ConditionType.DEGRADED, True, "InvalidSpec", 5))
    assert reasons(transition_events(running, invalid)) == [(WARNING, "InvalidSpec")]
    assert reasons(transition_events(ReleaseStatus(), complete)) == [(NORMAL, "RolloutComplete")]


def test_rollout_duration_runs_from_complete_false_to_true() -> None:
    started = status(cond(ConditionType.COMPLETE, False, "PodsRemaining", 0))
    finished = status(cond(ConditionType.COMPLETE, True, "AllPodsUpdated", 75))
    assert rollout_seconds(started, finished) == 75.0
    assert rollout_seconds(finished, finished) is None, "already complete"
    assert rollout_seconds(ReleaseStatus(), finished) is None, "never seen running: no duration"
    assert rollout_seconds(started, started) is None


def test_event_names_are_fixed_per_occurrence_and_valid() -> None:
    event = ReleaseEvent(NORMAL, "BatchStarted", "m", "batch\0x")
    name = event_name("web", "uid-1", event)
    assert name == event_name("web", "uid-1", event)
    assert name != event_name("web", "uid-2", event), "a recreated release starts afresh"
    assert name.startswith("web.") and len(name) == len("web.") + 16
    assert len(event_name("r" * 253, "u", event)) <= 253


def test_involved_object_is_the_release() -> None:
    raw = {"metadata": {"name": "web", "uid": "u1", "resourceVersion": "7"}}
    assert involved_object(raw) == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": "web",
        "uid": "u1",
        "resourceVersion": "7",
    }


def test_target_patch_is_pinned_to_the_resource_version() -> None:
    assert target_patch(NEW, "41") == [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": "41"},
        {"op": "add", "path": annotation_path(ANNOTATION_TARGET_IMAGE), "value": NEW},
    ]
    assert annotation_path(ANNOTATION_TARGET_IMAGE) == "/metadata/annotations/hotupgrade.io~1target-image"
