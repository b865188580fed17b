"""The Pod Security Standards `restricted` profile as a pure check over a pod (JSON, as on the wire).

Why here: the pair must never turn a compliant pod into one the namespace's PodSecurity admission rejects
(`webhook.config` refuses a pair securityContext that fails these rules; the tests run every injected pod
through them). Rules, check IDs and reasons follow the upstream implementation, policy version "latest"
of Kubernetes v1.34: k8s.io/pod-security-admission@v0.34.4/policy/check_*.go (the Standards' text is
https://kubernetes.io/docs/concepts/security/pod-security-standards/). Not modelled: the user-namespace
relaxation behind the alpha UserNamespacesPodSecurityStandards gate (off by default), and exemptions,
which are the namespace's business. No I/O.
"""

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Container = Mapping[str, Any]
Spec = Mapping[str, Any]
Meta = Mapping[str, Any]

# check_capabilities_baseline.go capabilities_allowed_1_0 (overridden by the restricted check).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
# check_restrictedVolumes.go: the only volume sources `restricted` allows.
RESTRICTED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "image",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
# check_sysctls.go sysctlsAllowedV1Dot32.
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
        "net.ipv4.tcp_rmem",
        "net.ipv4.tcp_wmem",
    }
)
# check_seLinuxOptions.go selinuxAllowedTypes1_31.
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
GOOD_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # seccomp and AppArmor alike


@dataclass(frozen=True)
class Violation:
    """One failed check: upstream's check ID and reason, and who is at fault (`pod` or container names)."""

    check: str
    reason: str
    culprits: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.reason} ({', '.join(self.culprits)})"


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def containers(spec: Spec) -> Iterator[Container]:
    """Init, regular and ephemeral containers, the order of upstream's visitContainers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in _list(spec.get(key)):
            if isinstance(container, Mapping):
                yield container


def _name(container: Container) -> str:
    return str(container.get("name", ""))


def _sc(container: Container) -> Mapping[str, Any]:
    return _map(container.get("securityContext"))


def _pod_sc(spec: Spec) -> Mapping[str, Any]:
    return _map(spec.get("securityContext"))


def _windows(spec: Spec) -> bool:
    return _map(spec.get("os")).get("name") == "windows"


def _bad_containers(spec: Spec, bad: Callable[[Container], bool]) -> tuple[str, ...]:
    return tuple(_name(c) for c in containers(spec) if bad(c))


def _violation(check: str, reason: str, culprits: list[str] | tuple[str, ...]) -> list[Violation]:
    return [Violation(check, reason, tuple(culprits))] if culprits else []


# Baseline checks that `restricted` keeps.


def _host_process(meta: Meta, spec: Spec) -> list[Violation]:
    def host_process(sc: Mapping[str, Any]) -> bool:
        return _map(sc.get("windowsOptions")).get("hostProcess") is True

    culprits = ["pod"] if host_process(_pod_sc(spec)) else []
    culprits += _bad_containers(spec, lambda c: host_process(_sc(c)))
    return _violation("windowsHostProcess", "hostProcess", culprits)


def _host_namespaces(meta: Meta, spec: Spec) -> list[Violation]:
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key) is True]
    return _violation("hostNamespaces", "host namespaces", used)


def _privileged(meta: Meta, spec: Spec) -> list[Violation]:
    culprits = _bad_containers(spec, lambda c: _sc(c).get("privileged") is True)
    return _violation("privileged", "privileged", culprits)


def _host_ports(meta: Meta, spec: Spec) -> list[Violation]:
    def uses_host_port(c: Container) -> bool:
        return any(_map(port).get("hostPort") not in (None, 0) for port in _list(c.get("ports")))

    return _violation("hostPorts", "hostPort", _bad_containers(spec, uses_host_port))


def _app_armor(meta: Meta, spec: Spec) -> list[Violation]:
    def bad(sc: Mapping[str, Any]) -> bool:
        profile = sc.get("appArmorProfile")
        return isinstance(profile, Mapping) and profile.get("type") not in GOOD_PROFILE_TYPES

    culprits = ["pod"] if bad(_pod_sc(spec)) else []
    culprits += _bad_containers(spec, lambda c: bad(_sc(c)))
    prefix = "container.apparmor.security.beta.kubernetes.io/"
    for key, value in _map(meta.get("annotations")).items():
        good = value in ("", "runtime/default") or str(value).startswith("localhost/")
        if str(key).startswith(prefix) and not good:
            culprits.append(f"annotation {key}")
    return _violation("appArmorProfile", "forbidden AppArmor profile", culprits)


def _se_linux(meta: Meta, spec: Spec) -> list[Violation]:
    def bad(sc: Mapping[str, Any]) -> bool:
        options = sc.get("seLinuxOptions")
        if not isinstance(options, Mapping):
            return False
        return (
            options.get("type", "") not in SELINUX_TYPES
            or bool(options.get("user"))
            or bool(options.get("role"))
        )

    culprits = ["pod"] if bad(_pod_sc(spec)) else []
    culprits += _bad_containers(spec, lambda c: bad(_sc(c)))
    return _violation("seLinuxOptions", "seLinuxOptions", culprits)


def _proc_mount(meta: Meta, spec: Spec) -> list[Violation]:
    culprits = _bad_containers(spec, lambda c: _sc(c).get("procMount") not in (None, "Default"))
    return _violation("procMount", "procMount", culprits)


def _sysctls(meta: Meta, spec: Spec) -> list[Violation]:
    names = [str(_map(s).get("name")) for s in _list(_pod_sc(spec).get("sysctls"))]
    return _violation("sysctls", "forbidden sysctls", [n for n in names if n not in SAFE_SYSCTLS])


def _host_probes(meta: Meta, spec: Spec) -> list[Violation]:
    def host_set(handler: object) -> bool:
        handler = _map(handler)
        return any(_map(handler.get(kind)).get("host") for kind in ("httpGet", "tcpSocket"))

    def bad(c: Container) -> bool:
        probes = [c.get(key) for key in ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = _map(c.get("lifecycle"))
        hooks = [lifecycle.get("postStart"), lifecycle.get("preStop")]
        return any(host_set(handler) for handler in [*probes, *hooks])

    return _violation("hostProbesAndHostLifecycle", "probe or lifecycle host", _bad_containers(spec, bad))


# Restricted checks (restrictedVolumes replaces hostPathVolumes, the restricted seccomp and
# capabilities checks replace their baseline versions: upstream's OverrideCheckIDs).


def _volumes(meta: Meta, spec: Spec) -> list[Violation]:
    bad = []
    for volume in _list(spec.get("volumes")):
        sources = {key for key in _map(volume) if key != "name"}
        if not sources & RESTRICTED_VOLUME_SOURCES:
            bad.append(f"volume {_map(volume).get('name')} ({', '.join(sorted(sources)) or 'unknown'})")
    return _violation("restrictedVolumes", "restricted volume types", bad)


def _privilege_escalation(meta: Meta, spec: Spec) -> list[Violation]:
    if _windows(spec):
        return []
    culprits = _bad_containers(spec, lambda c: _sc(c).get("allowPrivilegeEscalation") is not False)
    return _violation("allowPrivilegeEscalation", "allowPrivilegeEscalation != false", culprits)


def _run_as_non_root(meta: Meta, spec: Spec) -> list[Violation]:
    pod = _pod_sc(spec).get("runAsNonRoot")
    culprits = ["pod"] if pod is False else []
    for c in containers(spec):
        own = _sc(c).get("runAsNonRoot")
        if own is False or (own is None and pod is not True):
            culprits.append(_name(c))
    return _violation("runAsNonRoot", "runAsNonRoot != true", culprits)


def _run_as_user(meta: Meta, spec: Spec) -> list[Violation]:
    culprits = ["pod"] if _pod_sc(spec).get("runAsUser") == 0 else []
    culprits += _bad_containers(spec, lambda c: _sc(c).get("runAsUser") == 0)
    return _violation("runAsUser", "runAsUser=0", culprits)


def _seccomp(meta: Meta, spec: Spec) -> list[Violation]:
    if _windows(spec):
        return []
    pod_profile = _pod_sc(spec).get("seccompProfile")
    culprits: list[str] = []
    pod_set = False
    if isinstance(pod_profile, Mapping):
        if pod_profile.get("type") in GOOD_PROFILE_TYPES:
            pod_set = True
        else:
            culprits.append("pod")
    for c in containers(spec):
        own = _sc(c).get("seccompProfile")
        if isinstance(own, Mapping):
            if own.get("type") not in GOOD_PROFILE_TYPES:
                culprits.append(_name(c))
        elif not pod_set:
            culprits.append(_name(c))
    return _violation("seccompProfile_restricted", "seccompProfile", culprits)


def _capabilities(meta: Meta, spec: Spec) -> list[Violation]:
    if _windows(spec):
        return []

    def bad(c: Container) -> bool:
        capabilities = _map(_sc(c).get("capabilities"))
        drops_all = "ALL" in _list(capabilities.get("drop"))
        adds_only_bind = all(cap == "NET_BIND_SERVICE" for cap in _list(capabilities.get("add")))
        return not (drops_all and adds_only_bind)

    return _violation("capabilities_restricted", "unrestricted capabilities", _bad_containers(spec, bad))


CHECKS: tuple[Callable[[Meta, Spec], list[Violation]], ...] = (
    _host_process,
    _host_namespaces,
    _privileged,
    _host_ports,
    _app_armor,
    _se_linux,
    _proc_mount,
    _sysctls,
    _host_probes,
    _volumes,
    _privilege_escalation,
    _run_as_non_root,
    _run_as_user,
    _seccomp,
    _capabilities,
)


def restricted_violations(pod: Mapping[str, Any]) -> list[Violation]:
    """Every `restricted` rule the pod breaks (empty: PodSecurity admission at `restricted` admits it)."""
    meta, spec = _map(pod.get("metadata")), _map(pod.get("spec"))
    return [violation for check in CHECKS for violation in check(meta, spec)]
