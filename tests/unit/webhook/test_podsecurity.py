"""The `restricted` check: every rule fails on what upstream's own tests reject, and passes the compliant pod.

Examples follow k8s.io/pod-security-admission@v0.34.4/policy/check_*_test.go.
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from webhook.podsecurity import restricted_violations

Pod = dict[str, Any]
CASES = Path(__file__).parent / "testdata" / "cases"


def compliant() -> Pod:
    pod: Pod = json.loads((CASES / "restricted-pod.json").read_text())
    return pod


def container(pod: Pod) -> dict[str, Any]:
    first: dict[str, Any] = pod["spec"]["containers"][0]
    return first


def sc(pod: Pod) -> dict[str, Any]:
    context: dict[str, Any] = container(pod)["securityContext"]
    return context


def test_the_case_pod_is_compliant() -> None:
    assert restricted_violations(compliant()) == []


BREAKS: dict[str, tuple[Callable[[Pod], object], str]] = {
    "windows hostProcess": (
        lambda p: sc(p).update(windowsOptions={"hostProcess": True}),
        "windowsHostProcess",
    ),
    "hostNetwork": (lambda p: p["spec"].update(hostNetwork=True), "hostNamespaces"),
    "hostPID": (lambda p: p["spec"].update(hostPID=True), "hostNamespaces"),
    "hostIPC": (lambda p: p["spec"].update(hostIPC=True), "hostNamespaces"),
    "privileged": (lambda p: sc(p).update(privileged=True), "privileged"),
    "hostPort": (lambda p: container(p)["ports"][0].update(hostPort=8080), "hostPorts"),
    "AppArmor Unconfined": (
        lambda p: sc(p).update(appArmorProfile={"type": "Unconfined"}),
        "appArmorProfile",
    ),
    "AppArmor annotation": (
        lambda p: p["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/catalog": "unconfined"}
        ),
        "appArmorProfile",
    ),
    "SELinux type": (lambda p: sc(p).update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"),
    "SELinux user": (lambda p: sc(p).update(seLinuxOptions={"user": "root"}), "seLinuxOptions"),
    "procMount Unmasked": (lambda p: sc(p).update(procMount="Unmasked"), "procMount"),
    "unsafe sysctl": (
        lambda p: p["spec"]["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
        "sysctls",
    ),
    "probe host": (
        lambda p: container(p).update(livenessProbe={"httpGet": {"host": "10.0.0.1", "port": 80}}),
        "hostProbesAndHostLifecycle",
    ),
    "lifecycle host": (
        lambda p: container(p).update(lifecycle={"preStop": {"tcpSocket": {"host": "x", "port": 1}}}),
        "hostProbesAndHostLifecycle",
    ),
    "hostPath volume": (
        lambda p: p["spec"].update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]),
        "restrictedVolumes",
    ),
    "nfs volume": (
        lambda p: p["spec"].update(volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}]),
        "restrictedVolumes",
    ),
    "allowPrivilegeEscalation unset": (
        lambda p: sc(p).pop("allowPrivilegeEscalation"),
        "allowPrivilegeEscalation",
    ),
    "allowPrivilegeEscalation true": (
        lambda p: sc(p).update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation",
    ),
    "runAsNonRoot false on the container": (lambda p: sc(p).update(runAsNonRoot=False), "runAsNonRoot"),
    "runAsNonRoot unset everywhere": (
        lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"),
        "runAsNonRoot",
    ),
    "runAsUser 0": (lambda p: sc(p).update(runAsUser=0), "runAsUser"),
    "pod runAsUser 0": (lambda p: p["spec"]["securityContext"].update(runAsUser=0), "runAsUser"),
    "seccomp unset": (lambda p: sc(p).pop("seccompProfile"), "seccompProfile_restricted"),
    "seccomp Unconfined": (
        lambda p: sc(p).update(seccompProfile={"type": "Unconfined"}),
        "seccompProfile_restricted",
    ),
    "capabilities not dropped": (lambda p: sc(p).pop("capabilities"), "capabilities_restricted"),
    "capability added": (
        lambda p: sc(p).update(capabilities={"drop": ["ALL"], "add": ["NET_RAW"]}),
        "capabilities_restricted",
    ),
    "init container without seccomp": (
        lambda p: p["spec"].update(initContainers=[{"name": "init", "image": "i", "securityContext": {}}]),
        "seccompProfile_restricted",
    ),
    "ephemeral container escalates": (
        lambda p: p["spec"].update(
            ephemeralContainers=[
                {"name": "debug", "image": "d", "securityContext": {**sc(p), "privileged": True}}
            ]
        ),
        "privileged",
    ),
}


@pytest.mark.parametrize("name", BREAKS)
def test_each_rule_rejects_what_upstream_rejects(name: str) -> None:
    pod = compliant()
    mutation, check = BREAKS[name]
    mutation(pod)
    assert check in {v.check for v in restricted_violations(pod)}, name


@pytest.mark.parametrize(
    "mutation",
    [
        lambda p: sc(p).update(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}),
        lambda p: sc(p).update(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"}),
        # A pod-level seccompProfile or runAsNonRoot covers containers that do not set their own.
        lambda p: (
            p["spec"]["securityContext"].update(seccompProfile={"type": "RuntimeDefault"}),
            sc(p).pop("seccompProfile"),
        ),
        lambda p: sc(p).update(seLinuxOptions={"type": "container_engine_t", "level": "s0:c1"}),
        lambda p: p["spec"].update(
            volumes=[{"name": "c", "configMap": {"name": "x"}}, {"name": "e", "emptyDir": {}}]
        ),
        lambda p: p["spec"]["securityContext"].update(
            sysctls=[{"name": "net.ipv4.tcp_rmem", "value": "4096"}]
        ),
        lambda p: sc(p).update(procMount="Default"),
    ],
)
def test_what_restricted_allows_passes(mutation: Callable[[Pod], object]) -> None:
    pod = compliant()
    mutation(pod)
    assert restricted_violations(pod) == []


def test_windows_pods_are_exempt_from_the_linux_only_rules() -> None:
    pod = compliant()
    pod["spec"]["os"] = {"name": "windows"}
    for key in ("allowPrivilegeEscalation", "capabilities", "seccompProfile"):
        sc(pod).pop(key)
    assert restricted_violations(pod) == []


def test_violations_name_the_culprits() -> None:
    pod = compliant()
    pod["spec"]["containers"].append({"name": "sidecar", "image": "s"})
    pod["spec"]["securityContext"]["runAsNonRoot"] = False
    by_check = {v.check: v.culprits for v in restricted_violations(pod)}
    assert by_check["runAsNonRoot"] == ("pod", "catalog", "sidecar")
    assert by_check["seccompProfile_restricted"] == ("sidecar",)
