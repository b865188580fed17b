"""nativeSidecar mode (cases/native-sidecar-pod.json): only kubelets from 1.32 restart a restartable init
container whose image changed (kubernetes#126525). Older ones are refused up front when the node says
its version; a kubelet that ignores the change anyway is caught within `kubelet_grace` seconds and named,
and the rollback of a change that never happened ends at once (not a false "rollback incomplete").
"""

import copy
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.actions import CreatePrePullPod, Fail, Observe, PatchStandbyImage, RollBack, WaitFor
from controller.events import due
from controller.kubelet import minor_version, restarts_native_sidecar_on_image_change
from controller.observed import NodeView, observe_pod
from controller.patches import patch_for
from controller.record import Phase, Reason
from controller.steps import fence_token, next_step
from tests.unit.controller.podfixtures import (
    ADMITTED,
    EMPTY,
    NEW,
    SERVING_A,
    T0,
    agent,
    observe,
    set_container,
)
from tests.unit.controller.test_steps import (
    DRAINED,
    POLICY,
    apply,
    record_of,
    resetting,
    swapped_in,
    taking_over,
)

CASE = Path(__file__).parent / "cases" / "native-sidecar-pod.json"
OLD_KUBELET = NodeView(name="node-1", kubelet_version="v1.30.4")
NEW_KUBELET = NodeView(name="node-1", kubelet_version="v1.32.0")
UNKNOWN = NodeView(name="node-1", error="Forbidden: nodes is forbidden")


def native_pod() -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(CASE.read_text())
    return pod


def at(pod: dict[str, Any], *, node: NodeView | None, after: float = 0.0, agents: Any = SERVING_A) -> Any:
    return observe_pod(pod, now=T0 + timedelta(seconds=after), agents=agents, node=node, budget=ADMITTED)


def test_an_old_kubelet_is_refused_before_anything_changes() -> None:
    """The case file: before, the standby was patched, the kubelet ignored it, and after 10 minutes the
    record said "rollback incomplete"."""
    pod = native_pod()
    assert next_step(at(pod, node=None, agents=None), POLICY) == Observe(node=True), "reads the node"
    action = next_step(at(pod, node=OLD_KUBELET, agents=None), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.KUBELET_UNSUPPORTED
    for words in ("node-1", "v1.30.4", "v1.32+", "kubernetes#126525", "mode: containers"):
        assert words in action.record.message
    assert all("/spec/" not in op["path"] for op in patch_for(action, "1"))
    owed = due(action.record)
    assert owed is not None and owed.type == "Warning"


@pytest.mark.parametrize(
    "node", [NEW_KUBELET, UNKNOWN, NodeView(name="node-1", kubelet_version="v1.33.1-eks-1")]
)
def test_a_kubelet_that_restarts_native_sidecars_or_an_unknown_one_proceeds(node: NodeView) -> None:
    action = next_step(at(native_pod(), node=node), POLICY)
    assert isinstance(action, PatchStandbyImage) and action.spec_path == "/spec/initContainers/1"
    with_pre_pull = next_step(at(native_pod(), node=node), replace(POLICY, pre_pull=True))
    assert isinstance(with_pre_pull, CreatePrePullPod)


def test_containers_mode_never_reads_the_node() -> None:
    assert isinstance(next_step(observe(taking_over(), agents=SERVING_A, after=1), POLICY), WaitFor)


def native_taking_over() -> dict[str, Any]:
    pod = native_pod()
    action = next_step(at(pod, node=UNKNOWN), POLICY)
    assert isinstance(action, PatchStandbyImage)
    return apply(pod, action)


def test_a_kubelet_that_ignores_the_image_change_is_named_within_the_grace() -> None:
    pod = native_taking_over()  # spec says NEW; the kubelet keeps containerd://b1 on the empty image
    assert isinstance(next_step(at(pod, node=UNKNOWN, after=29), POLICY), WaitFor), "within the grace"
    assert next_step(at(pod, node=None, after=31), POLICY) == Observe(node=True)
    action = next_step(at(pod, node=OLD_KUBELET, after=31), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    for words in (
        "did not restart hotupgrade-b within 30s",
        "containerd://b1",
        "v1.30.4",
        "kubernetes#126525",
    ):
        assert words in action.record.message
    assert (action.expect_image, action.image) == (NEW, EMPTY)


def test_the_rollback_of_an_ignored_change_ends_at_once() -> None:
    # Fenced (agents of schema 1.4+): no new agent can have started, so "never restarted" is believed.
    pod = native_taking_over()
    fenced = {
        **SERVING_A,
        "a": replace(SERVING_A["a"], fences=True, fence_slot="b", fence_token=fence_token(record_of(pod))),
    }
    rolling = apply(pod, next_step(at(pod, node=UNKNOWN, after=31, agents=fenced), POLICY))
    assert record_of(rolling).phase is Phase.ROLLING_BACK
    action = next_step(at(rolling, node=UNKNOWN, after=32, agents=fenced), POLICY)
    assert isinstance(action, Fail) and action.event.reason == "RolledBack"
    assert action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    assert "rollback incomplete" not in action.record.message


def test_unfenced_the_rollback_of_an_ignored_change_is_believed_after_the_kubelet_grace() -> None:
    # Agents before the fence: "never restarted" may be a status the API server publishes late while a
    # new agent takes over (docs/upgrades.md "A rollback is fenced, then checked"): look once more.
    pod = native_taking_over()
    rolling = apply(pod, next_step(at(pod, node=UNKNOWN, after=31), POLICY))
    assert record_of(rolling).phase is Phase.ROLLING_BACK
    waiting = next_step(at(rolling, node=UNKNOWN, after=32), POLICY)
    assert isinstance(waiting, WaitFor) and waiting.record is None and "no fence" in waiting.reason
    action = next_step(at(rolling, node=UNKNOWN, after=31 + POLICY.kubelet_grace + 1), POLICY)
    assert isinstance(action, Fail) and action.event.reason == "RolledBack"
    assert action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    assert "rollback incomplete" not in action.record.message


def test_a_kubelet_at_work_is_not_mistaken_for_one_that_ignores() -> None:
    pod = taking_over()
    pulling = set_container(pod, "hotupgrade-b", cid=None, state="waiting", reason="ContainerCreating")
    assert isinstance(next_step(observe(pulling, agents=SERVING_A, after=45), POLICY), WaitFor)
    starting = swapped_in(pod)  # a new container whose agent has not taken over yet
    assert isinstance(next_step(observe(starting, agents=SERVING_A, after=45), POLICY), WaitFor)


def test_a_new_agent_that_answers_proves_the_kubelet_acted() -> None:
    # The kubelet publishes a pod's status when a sync starts; the sync that started the target blocks in
    # its postStart hook until the take-over ends, so the API server shows the empty container meanwhile.
    # On a busy node the new agent can still be `starting` past the grace: it answers on its slot's port,
    # which only a target container does, so the change was made (a rollback here failed a good upgrade).
    starting_b = {
        "a": SERVING_A["a"],
        "b": agent("b", "standby", "starting", slots={"a": "serving", "b": "starting"}, epoch=None),
    }
    for pod in (taking_over(), native_taking_over()):
        for after in (31, 59):
            action = next_step(at(pod, node=NEW_KUBELET, after=after, agents=starting_b), POLICY)
            assert isinstance(action, WaitFor) and action.record is None, (after, action)
            assert "take over" in action.reason
    # Nothing more than the step timeout: still `starting` after it, the take-over is rolled back.
    late = next_step(at(taking_over(), node=NEW_KUBELET, after=61, agents=starting_b), POLICY)
    assert isinstance(late, RollBack) and late.record.reason is Reason.TAKE_OVER_TIMEOUT


def test_containers_mode_ignored_change_is_caught_too_without_a_node_lookup() -> None:
    action = next_step(observe(taking_over(), agents=SERVING_A, after=31), POLICY)
    assert isinstance(action, RollBack) and action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    assert "kubernetes#126525" not in action.record.message


def test_an_ignored_reset_fails_at_once_but_names_the_serving_slot() -> None:
    pod = resetting()  # the old container keeps running the old image under a spec that says empty
    action = next_step(observe(pod, agents=DRAINED, after=20 + 31), POLICY)
    assert isinstance(action, Fail) and action.record.reason is Reason.KUBELET_IGNORED_IMAGE_CHANGE
    assert action.status is not None and action.status.active == "hotupgrade-b"


@pytest.mark.parametrize(
    ("version", "minor", "restarts"),
    [
        ("v1.30.4", (1, 30), False),
        ("v1.31.9", (1, 31), False),
        ("v1.32.0", (1, 32), True),
        ("1.34.4", (1, 34), True),
        ("v1.32.1-eks-8a2c0d1", (1, 32), True),
        ("v2.0.0", (2, 0), True),
        ("", None, None),
        ("unknown", None, None),
        (None, None, None),
    ],
)
def test_kubelet_versions(version: str | None, minor: tuple[int, int] | None, restarts: bool | None) -> None:
    assert minor_version(version) == minor
    assert restarts_native_sidecar_on_image_change(version) is restarts


def test_native_sidecars_are_recognised_only_with_restart_policy_always() -> None:
    pod = native_pod()
    assert observe_pod(pod, now=T0).containers["hotupgrade-b"].native_sidecar
    plain = copy.deepcopy(pod)
    del plain["spec"]["initContainers"][1]["restartPolicy"]
    assert not observe_pod(plain, now=T0).containers["hotupgrade-b"].native_sidecar
    assert not observe_pod(pod, now=T0).containers["app"].native_sidecar
