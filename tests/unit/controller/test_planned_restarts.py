"""Planned restarts: each image change the controller makes is counted in `hotupgrade.io/planned-restarts`
in the same patch, so alert rules can subtract planned restarts from the kubelet's restartCount.

The count must match what the kubelet adds to `restartCount` (a new container per acted-on change), so
after each scenario the test compares the two: crashes stay visible, planned restarts cancel out.
"""

import json
from typing import Any

from controller.actions import Complete, Fail, RollBack, SetImage
from controller.keys import ANNOTATION_PLANNED_RESTARTS
from controller.patches import patch_for
from controller.restarts import plan_restart, planned_in
from controller.steps import next_step
from tests.unit.controller.podfixtures import SERVING_A, observe, set_container
from tests.unit.controller.test_steps import (
    DRAINED,
    POLICY,
    TAKEN_OVER,
    annotate,
    apply,
    draining,
    resetting,
    swapped_in,
    taking_over,
)


def planned(pod: dict[str, Any]) -> dict[str, int]:
    return planned_in(pod["metadata"]["annotations"])


def restarts(pod: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["restartCount"] for s in pod["status"]["containerStatuses"]}


def test_an_upgrade_plans_exactly_the_two_restarts_the_kubelet_counts() -> None:
    pod = taking_over()
    assert planned(pod) == {"hotupgrade-b": 1}, "written with the standby's image change"
    pod = set_container(resetting(), "hotupgrade-a", cid="containerd://a2", restarts=1)
    assert planned(pod) == {"hotupgrade-a": 1, "hotupgrade-b": 1}
    done = next_step(observe(pod, agents=DRAINED, after=25), POLICY)
    assert isinstance(done, Complete)
    pod = apply(pod, done)
    assert restarts(pod) == {"hotupgrade-a": 1, "hotupgrade-b": 1, "app": 0}
    assert planned(pod) == {"hotupgrade-a": 1, "hotupgrade-b": 1}, "RESTARTS minus planned: 0"


def test_the_count_rides_in_the_patch_that_changes_the_image() -> None:
    action = next_step(observe(draining(), agents=DRAINED, after=20), POLICY)
    assert isinstance(action, SetImage)
    ops = patch_for(action, "7")
    image_op = next(i for i, op in enumerate(ops) if op["path"].endswith("/image") and op["op"] == "replace")
    counts = [op for op in ops if op["path"] == "/metadata/annotations/hotupgrade.io~1planned-restarts"]
    assert len(counts) == 1 and ops.index(counts[0]) > image_op
    assert json.loads(counts[0]["value"]) == {"hotupgrade-a": 1, "hotupgrade-b": 1}


def test_a_crash_loop_stays_unplanned() -> None:
    # The kubelet started the target (restart 1), which crashed twice: waiting, restartCount 3, and the
    # containerID of the last crashed container (kubelet_pods.go keeps it in the Waiting status).
    pod = set_container(
        taking_over(),
        "hotupgrade-b",
        cid="containerd://b3",
        restarts=3,
        state="waiting",
        reason="CrashLoopBackOff",
    )
    action = next_step(observe(pod, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack)
    back = set_container(apply(pod, action), "hotupgrade-b", cid="containerd://b9", restarts=4)
    assert planned(back) == {"hotupgrade-b": 2}, "the swap and the rollback"
    assert restarts(back)["hotupgrade-b"] - planned(back)["hotupgrade-b"] == 2, "the two crashes"


def test_a_pull_failure_rolled_back_plans_one_restart() -> None:
    """The kubelet stopped the empty container but never started the target (restartCount unchanged);
    the rollback's new container is the one restart."""
    pull_failed = set_container(
        taking_over(), "hotupgrade-b", cid=None, state="waiting", reason="ErrImagePull"
    )
    action = next_step(observe(pull_failed, agents=SERVING_A, after=5), POLICY)
    assert isinstance(action, RollBack) and action.planned is None
    back = set_container(apply(pull_failed, action), "hotupgrade-b", cid="containerd://b2", restarts=1)
    assert planned(back) == {"hotupgrade-b": 1} == {"hotupgrade-b": restarts(back)["hotupgrade-b"]}


def test_an_ignored_change_is_taken_back() -> None:
    pod = taking_over()
    action = next_step(observe(pod, agents=SERVING_A, after=31), POLICY)
    assert isinstance(action, RollBack) and action.planned is not None and action.planned.delta == -1
    rolled = apply(pod, action)
    assert planned(rolled) == {"hotupgrade-b": 0} and restarts(rolled)["hotupgrade-b"] == 0
    # Agents before the fence: the unchanged container is believed after the kubelet's grace.
    done = next_step(observe(rolled, agents=SERVING_A, after=31 + POLICY.kubelet_grace + 1), POLICY)
    assert isinstance(done, Fail) and done.event.reason == "RolledBack"


def test_counts_add_up_over_upgrades_and_survive_a_malformed_value() -> None:
    annotations = {ANNOTATION_PLANNED_RESTARTS: '{"hotupgrade-a": 3, "hotupgrade-b": "x", "bad": -1}'}
    assert planned_in(annotations) == {"hotupgrade-a": 3}
    assert plan_restart(annotations, "hotupgrade-b").counts == {"hotupgrade-a": 3, "hotupgrade-b": 1}
    assert planned_in({ANNOTATION_PLANNED_RESTARTS: "[1]"}) == {} == planned_in({})
    assert plan_restart({}, "hotupgrade-a", -1).counts == {"hotupgrade-a": 0}, "never below zero"
    pod = taking_over()
    second = annotate(pod, target=None)
    assert planned(second) == {"hotupgrade-b": 1}


def test_the_event_sequence_is_unchanged_by_the_count() -> None:
    pod = swapped_in(taking_over())
    took = next_step(observe(pod, agents=TAKEN_OVER, after=5), POLICY)
    assert not isinstance(took, SetImage), "recognising the take-over changes no image: no count"
