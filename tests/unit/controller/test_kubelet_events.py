"""The kubelet's Events as proof that it acted on an image change whose container the pod's status does
not show yet: the kubelet publishes a pod's status when a sync starts, and the sync that starts a sidecar
ends only with its postStart hook, so on a busy node the old container shows past `kubelet_grace`. A
change judged ignored then was rolled back and a good upgrade failed (e2e/test_release, CI on 3523f8a).
"""

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller.actions import Fail, Observe, RollBack, WaitFor
from controller.kubelet import EVENT_CLOCK_SLACK, replacing_since
from controller.observed import KubeletEvent, kubelet_events_view
from controller.record import Reason
from controller.steps import next_step
from tests.unit.controller.podfixtures import SERVING_A, T0, observe
from tests.unit.controller.test_native_sidecar import NEW_KUBELET, at, native_taking_over
from tests.unit.controller.test_steps import DRAINED, POLICY, resetting, taking_over


def kubelet_event(container: str, reason: str, after: float) -> KubeletEvent:
    return KubeletEvent(container=container, reason=reason, last_seen=T0 + timedelta(seconds=after))


KILLING_B = kubelet_event("hotupgrade-b", "Killing", 1)  # "definition changed, will be restarted"


@pytest.mark.parametrize("reason", ["Killing", "Pulled", "Created", "Started"])
def test_a_kubelet_event_after_the_swap_means_wait_for_the_take_over(reason: str) -> None:
    acted = [kubelet_event("hotupgrade-b", reason, 2)]
    action = next_step(observe(taking_over(), agents=SERVING_A, after=31, kubelet_events=acted), POLICY)
    assert isinstance(action, WaitFor) and action.record is None, action
    assert f"the kubelet is replacing hotupgrade-b: {reason} at" in action.reason
    # The step timeout still bounds it, with the reason that says what did not happen.
    late = next_step(observe(taking_over(), agents=SERVING_A, after=61, kubelet_events=acted), POLICY)
    assert isinstance(late, RollBack) and late.record.reason is Reason.TAKE_OVER_TIMEOUT, late


def test_native_sidecars_are_judged_on_the_same_evidence() -> None:
    pod = native_taking_over()
    ignored = next_step(at(pod, node=NEW_KUBELET, after=31), POLICY)
    assert isinstance(ignored, RollBack) and ignored.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    acted = next_step(replace(at(pod, node=NEW_KUBELET, after=31), kubelet_events=(KILLING_B,)), POLICY)
    assert isinstance(acted, WaitFor), acted


@pytest.mark.parametrize(
    "events",
    [
        pytest.param((), id="none"),
        pytest.param((kubelet_event("hotupgrade-b", "Killing", -10),), id="before-the-swap"),
        pytest.param((kubelet_event("hotupgrade-a", "Killing", 1),), id="other-container"),
        pytest.param((kubelet_event("hotupgrade-b", "Unhealthy", 5),), id="a-probe-result"),
    ],
)
def test_without_kubelet_evidence_the_change_is_ignored(events: tuple[KubeletEvent, ...]) -> None:
    action = next_step(observe(taking_over(), agents=SERVING_A, after=31, kubelet_events=events), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE


def test_the_events_are_read_only_when_the_change_looks_ignored() -> None:
    pod = taking_over()
    within = next_step(observe(pod, agents=SERVING_A, after=29, kubelet_events=None), POLICY)
    assert isinstance(within, WaitFor), within  # the grace runs: no Events read
    assert next_step(observe(pod, agents=SERVING_A, after=31, kubelet_events=None), POLICY) == Observe(
        kubelet_events=True
    )


def test_a_reset_the_kubelet_is_carrying_out_is_waited_for() -> None:
    # The old container's kill may take its grace period (an agent that drains slowly on SIGTERM).
    pod = resetting()  # phase since T0+20
    killing_a = [kubelet_event("hotupgrade-a", "Killing", 21)]
    action = next_step(observe(pod, agents=DRAINED, after=20 + 31, kubelet_events=killing_a), POLICY)
    assert isinstance(action, WaitFor), action
    late = next_step(observe(pod, agents=DRAINED, after=20 + 61, kubelet_events=killing_a), POLICY)
    assert isinstance(late, Fail) and late.record.reason is Reason.RESET_TIMEOUT, late


def test_replacing_since_allows_for_whole_seconds_and_the_nodes_clock() -> None:
    since = T0 + timedelta(seconds=10, milliseconds=700)
    edge = kubelet_event("hotupgrade-b", "Killing", 10.7 - EVENT_CLOCK_SLACK.total_seconds())
    older = kubelet_event("hotupgrade-b", "Killing", 8)
    started = kubelet_event("hotupgrade-b", "Started", 12)
    assert replacing_since([older], "hotupgrade-b", since) is None
    assert replacing_since([older, edge], "hotupgrade-b", since) == edge
    assert replacing_since([edge, started, older], "hotupgrade-b", since) == started  # the latest


def raw_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "reason": "Killing",
        "source": {"component": "kubelet", "host": "node-1"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{hotupgrade-b}"},
        "firstTimestamp": "2026-11-30T10:00:00Z",
        "lastTimestamp": "2026-11-30T10:00:05Z",
    }
    event.update(fields)
    return event


def test_kubelet_events_view_keeps_the_kubelets_container_events() -> None:
    at_5 = datetime.fromisoformat("2026-11-30T10:00:05+00:00")
    raw = [
        raw_event(),
        raw_event(  # events.k8s.io writers: no lastTimestamp, a series
            source={},
            reportingComponent="kubelet",
            lastTimestamp=None,
            firstTimestamp=None,
            eventTime="2026-11-30T10:00:01.000000Z",
            series={"count": 2, "lastObservedTime": "2026-11-30T10:00:05.500000Z"},
            involvedObject={"fieldPath": "spec.initContainers{hotupgrade-a}"},
            reason="Started",
        ),
        raw_event(source={"component": "hotupgrade-controller"}, reason="UpgradeStarted"),  # ours
        raw_event(involvedObject={"kind": "Pod", "name": "web-0"}, reason="MissingClusterDNS"),  # the pod
        raw_event(lastTimestamp=None, firstTimestamp=None),  # no time: nothing to compare
        raw_event(reason=None),
    ]
    assert kubelet_events_view(raw) == (
        KubeletEvent(container="hotupgrade-b", reason="Killing", last_seen=at_5),
        KubeletEvent(
            container="hotupgrade-a", reason="Started", last_seen=at_5 + timedelta(milliseconds=500)
        ),
    )
