"""The pre-pull pod: its name, its manifest, who it pulls as, and what its status means. Pure.

Before the standby gets the target image, the controller runs the image once on the pod's node in a
short-lived pod, so the swap restarts the container without waiting for a pull (the pod is NotReady, out
of its Service, only for the restart). The pod must be able to pull whatever the upgraded pod can (its
imagePullSecrets, which ServiceAccount admission already filled from its ServiceAccount, and that
ServiceAccount, for kubelet credential providers keyed on it), pass Pod Security `restricted`, and be
left alone by injectors; when it cannot pull, the kubelet's reason and message are the failure.
"""

import hashlib
from typing import Any

from controller.actions import PRE_PULL_DEFAULT_UID, CreatePrePullPod, PullAs
from controller.observed import ContainerView, ObservedPod, PrePullView
from webhook.contract import LABEL_POD_INJECT

PRE_PULL_NAME_PREFIX = "hotupgrade-prepull-"
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# Waiting states of the pre-pull container that will not pass by themselves (restartPolicy Never).
PRE_PULL_FAILURES = PULL_FAILURES | {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


def pre_pull_pod_name(pod_uid: str, image: str) -> str:
    """A stable, DNS-safe name, so a restarted controller finds the pod it created."""
    digest = hashlib.sha256(f"{pod_uid}\0{image}".encode()).hexdigest()[:16]
    return PRE_PULL_NAME_PREFIX + digest


def pull_as(pod: ObservedPod, standby: ContainerView) -> PullAs:
    """The pre-pull pod pulls with what the pod pulls with and runs as the standby container would."""
    uid = standby.run_as_user if standby.run_as_user is not None else pod.run_as_user
    gid = standby.run_as_group if standby.run_as_group is not None else pod.run_as_group
    return PullAs(
        service_account=pod.service_account,
        image_pull_secrets=pod.image_pull_secrets,
        run_as_user=uid if uid else PRE_PULL_DEFAULT_UID,  # never root: `restricted` forbids it
        run_as_group=gid,
    )


def pulled(pull: PrePullView) -> bool:
    """The image is on the node: the pod succeeded, or its container ran to exit code 0 (containers some
    other injector added may keep the pod itself running)."""
    return pull.phase == "Succeeded" or (pull.terminated_reason is not None and pull.exit_code == 0)


def pre_pull_state(pull: PrePullView) -> str:
    """`Phase/Reason: message`, the pod's own reason first (the kubelet refused the pod), else the
    container's (what it waits for)."""
    reason: str | None = pull.reason
    message = pull.reason_message
    if not reason:
        reason, message = pull.waiting_reason or pull.terminated_reason, pull.message
    text = "/".join(p for p in (pull.phase or "no phase", reason) if p)
    return f"{text}: {message}" if message else text


def pre_pull_failure(pull: PrePullView) -> str | None:
    """The real cause of a pre-pull that will not succeed (the kubelet's reason and message), or None."""
    if pull.waiting_reason in PRE_PULL_FAILURES:
        return f"{pull.waiting_reason}: {pull.message}" if pull.message else pull.waiting_reason
    if pull.terminated_reason is not None and pull.exit_code not in (None, 0):
        cause = f"{pull.terminated_reason} (exit code {pull.exit_code})"
        return f"{cause}: {pull.message}" if pull.message else cause
    if pull.phase == "Failed" or pull.reason == "Unschedulable":  # refused by the kubelet, or evicted
        return pre_pull_state(pull)
    return None


# Enough for runc to start /bin/sh and exit; limits too, for namespaces whose quota demands them.
PRE_PULL_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "16Mi"},
    "limits": {"cpu": "100m", "memory": "32Mi"},
}


def pre_pull_pod_manifest(
    action: CreatePrePullPod, *, namespace: str, owner: dict[str, str]
) -> dict[str, Any]:
    """A pod that runs the target image once on the node as `action.pull_as`, so its layers are there
    for the swap; `restricted`: non-root, RuntimeDefault seccomp, no capabilities, no escalation."""
    pull_as = action.pull_as
    pod_security: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": pull_as.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if pull_as.run_as_group is not None:
        pod_security["runAsGroup"] = pull_as.run_as_group
    spec: dict[str, Any] = {
        "nodeName": action.node_name,
        "restartPolicy": "Never",
        "tolerations": [{"operator": "Exists"}],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": pod_security,
        "containers": [
            {
                "name": "pull",
                "image": action.image,
                "imagePullPolicy": "IfNotPresent",
                # The sidecar image has /bin/sh (docs/contract.md); the entrypoint would start an agent.
                "command": ["/bin/sh", "-c", "exit 0"],
                "resources": PRE_PULL_RESOURCES,
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ],
    }
    if pull_as.service_account:
        spec["serviceAccountName"] = pull_as.service_account
    if pull_as.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in pull_as.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": action.pod_name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "hotupgrade-controller",
                # Never injected: an injected pair (ours or Istio's proxy) would keep the pod running.
                LABEL_POD_INJECT: "false",
                "sidecar.istio.io/inject": "false",
            },
            # Owned by the upgraded pod: garbage-collected with it if the controller never cleans up.
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", **owner}],
        },
        "spec": spec,
    }
