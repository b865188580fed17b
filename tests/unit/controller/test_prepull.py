"""The pre-pull pod (cases/prepull-pod-created.json): it pulls with what the pod pulls with, passes Pod
Security `restricted`, is never injected, and a failure names its real cause instead of a timeout.

The API server's own PodSecurity admission judges the manifest in
tests/integration/controller/test_prepull_apiserver.py; here the rules are spelled out field by field.
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.actions import CreatePrePullPod, Fail, Noop, PatchStandbyImage, WaitFor
from controller.events import due
from controller.observed import PrePullView, pre_pull_view
from controller.policy import Policy
from controller.prepull import pre_pull_pod_manifest
from controller.record import Phase, Reason
from controller.steps import next_step, pre_pull_refused
from tests.unit.controller.podfixtures import NEW, SERVING_A, observe, raw_pod
from tests.unit.controller.test_steps import PRE_PULL, apply, record_of

CASE = Path(__file__).parent / "cases" / "prepull-pod-created.json"
PRIVATE = "registry.private.example.com/mesh/sidecar:2"


def private_pod(**security: Any) -> dict[str, Any]:
    """web-1 pulling from a private registry: pull secrets, its own ServiceAccount, restricted."""
    pod = raw_pod(target=PRIVATE)
    pod["spec"]["serviceAccountName"] = "web"
    pod["spec"]["imagePullSecrets"] = [{"name": "regcred"}, {"name": "mirror-cred"}]
    pod["spec"]["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for container in pod["spec"]["containers"]:
        container["securityContext"] = {"runAsUser": 1337, "runAsGroup": 1337, **security}
    return pod


def created(pod: dict[str, Any], policy: Policy = PRE_PULL) -> tuple[CreatePrePullPod, dict[str, Any]]:
    action = next_step(observe(pod, agents=SERVING_A), policy)
    assert isinstance(action, CreatePrePullPod)
    owner = {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
    return action, pre_pull_pod_manifest(action, namespace="shop", owner=owner)


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The Pod Security Standards' `restricted` rules (kubernetes.io/docs/concepts/security/
    pod-security-standards) that a pod of this shape can break."""
    spec, out = pod["spec"], []
    pod_sc = spec.get("securityContext") or {}
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext") or {}
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            out.append(f"{c['name']}: capabilities.drop ALL")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: capabilities.add")
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
    if any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC")):
        out.append("host namespaces")
    return out


def test_the_case_file_is_what_the_old_controller_created_and_it_breaks_restricted() -> None:
    case = json.loads(CASE.read_text())
    assert "imagePullSecrets" not in case["spec"] and "serviceAccountName" not in case["spec"]
    assert restricted_violations(case), "the case file is the bug: keep it failing the rules"


def test_the_pre_pull_pod_pulls_with_the_pods_secrets_and_service_account() -> None:
    _, manifest = created(private_pod())
    case = json.loads(CASE.read_text())
    assert manifest["spec"]["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror-cred"}]
    assert manifest["spec"]["serviceAccountName"] == "web"
    assert manifest["spec"]["automountServiceAccountToken"] is False, "pulls with it, never talks as it"
    assert manifest["spec"]["nodeName"] == case["spec"]["nodeName"] == "node-1"
    assert manifest["metadata"]["ownerReferences"] == case["metadata"]["ownerReferences"]
    assert manifest["spec"]["containers"][0]["image"] == PRIVATE


def test_the_pre_pull_pod_passes_restricted_and_runs_as_the_standby() -> None:
    _, manifest = created(private_pod())
    assert restricted_violations(manifest) == []
    assert manifest["spec"]["securityContext"]["runAsUser"] == 1337
    assert manifest["spec"]["securityContext"]["runAsGroup"] == 1337
    resources = manifest["spec"]["containers"][0]["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, "quota-proof"


@pytest.mark.parametrize("uid", [None, 0])
def test_a_pod_that_names_no_uid_or_root_gets_a_non_root_puller(uid: int | None) -> None:
    pod = raw_pod()
    if uid is not None:
        pod["spec"]["securityContext"] = {"runAsUser": uid}
    _, manifest = created(pod)
    assert manifest["spec"]["securityContext"]["runAsUser"] == 65532
    assert "serviceAccountName" not in manifest["spec"] and "imagePullSecrets" not in manifest["spec"]
    assert restricted_violations(manifest) == []


def test_the_pre_pull_pod_is_never_injected() -> None:
    _, manifest = created(raw_pod())
    labels = manifest["metadata"]["labels"]
    assert labels["hotupgrade.io/inject"] == "false" and labels["sidecar.istio.io/inject"] == "false"


def pre_pulling(pod: dict[str, Any] | None = None) -> dict[str, Any]:
    source = pod if pod is not None else raw_pod()
    action, _ = created(source)
    return apply(source, action)


def kubelet_pod(*, phase: str, state: dict[str, Any], **status: Any) -> dict[str, Any]:
    """A pre-pull pod as the API server returns it, its `pull` container in `state`."""
    return {
        "metadata": {"name": "hotupgrade-prepull-x"},
        "spec": {"containers": [{"name": "pull", "image": NEW}]},
        "status": {
            "phase": phase,
            **status,
            "containerStatuses": [{"name": "pull", "image": NEW, "imageID": "", "state": state}],
        },
    }


PULL_MESSAGE = (
    'failed to pull and unpack image "registry.local/hotupgrade-sidecar:2": failed to resolve reference: '
    "pull access denied, repository does not exist or may require authorization"
)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (
            kubelet_pod(
                phase="Pending", state={"waiting": {"reason": "ErrImagePull", "message": PULL_MESSAGE}}
            ),
            f"ErrImagePull: {PULL_MESSAGE}",
        ),
        (
            kubelet_pod(
                phase="Pending",
                state={
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f"Back-off pulling image: {PULL_MESSAGE}",
                    }
                },
            ),
            "ImagePullBackOff: Back-off pulling image: failed to pull",
        ),
        (
            kubelet_pod(
                phase="Pending",
                state={
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": "container has runAsNonRoot and image will run as root",
                    }
                },
            ),
            "CreateContainerConfigError: container has runAsNonRoot",
        ),
        (
            kubelet_pod(
                phase="Failed",
                state={"waiting": {"reason": "ContainerCreating"}},
                reason="OutOfcpu",
                message="Pod Node didn't have enough resource: cpu, requested: 10, used: 1990",
            ),
            "Failed/OutOfcpu: Pod Node didn't have enough resource: cpu",
        ),
        (
            kubelet_pod(
                phase="Failed",
                state={
                    "terminated": {
                        "reason": "StartError",
                        "exitCode": 128,
                        "message": "exec: /bin/sh: not found",
                    }
                },
            ),
            "StartError (exit code 128): exec: /bin/sh: not found",
        ),
    ],
)
def test_a_pre_pull_failure_names_its_real_cause(raw: dict[str, Any], words: str) -> None:
    action = next_step(observe(pre_pulling(), after=5, pre_pull=pre_pull_view(raw)), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.PRE_PULL_FAILED
    assert words in action.record.message and "on node-1" in action.record.message
    assert action.delete_pre_pull is not None
    owed = due(action.record)
    assert owed is not None and words in owed.message


def test_a_pulled_image_is_enough_even_if_another_injector_keeps_the_pod_running() -> None:
    raw = kubelet_pod(phase="Running", state={"terminated": {"reason": "Completed", "exitCode": 0}})
    action = next_step(observe(pre_pulling(), after=5, pre_pull=pre_pull_view(raw)), PRE_PULL)
    assert isinstance(action, PatchStandbyImage) and "pre-pulled on node-1" in action.record.message


def test_a_pre_pull_timeout_says_what_it_last_saw() -> None:
    raw = kubelet_pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating", "message": ""}})
    view = pre_pull_view(raw)
    assert isinstance(next_step(observe(pre_pulling(), after=5, pre_pull=view), PRE_PULL), WaitFor)
    action = next_step(observe(pre_pulling(), after=61, pre_pull=view), PRE_PULL)
    assert isinstance(action, Fail) and action.record.reason is Reason.PRE_PULL_TIMEOUT
    assert "last seen: Pending/ContainerCreating" in action.record.message


def test_an_unschedulable_condition_is_a_failure() -> None:
    raw = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "x"}
            ],
        }
    }
    view = pre_pull_view(raw)
    assert view == PrePullView(exists=True, phase="Pending", reason="Unschedulable", reason_message="x")
    action = next_step(observe(pre_pulling(), after=5, pre_pull=view), PRE_PULL)
    assert isinstance(action, Fail) and "Unschedulable: x" in action.record.message


def test_a_pre_pull_pod_refused_by_admission_fails_at_once_naming_the_refusal() -> None:
    pod = pre_pulling()
    why = 'Forbidden: pods "hotupgrade-prepull-x" is forbidden: violates PodSecurity "restricted:latest"'
    action = pre_pull_refused(observe(pod, after=1), why)
    assert isinstance(action, Fail) and action.record.reason is Reason.PRE_PULL_FAILED
    assert why in action.record.message and action.record.phase is Phase.FAILED
    owed = due(action.record)
    assert owed is not None and owed.type == "Warning" and why in owed.message
    assert pre_pull_refused(observe(apply(pod, action), after=2), why) == Noop("no pre-pull in flight")
    assert record_of(apply(pod, action)).phase is Phase.FAILED


def test_pre_pull_is_on_by_default() -> None:
    assert Policy().pre_pull is True
    assert copy.deepcopy(Policy()).pre_pull
