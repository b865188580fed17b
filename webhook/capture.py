"""The webhook config's `capture` section and the capture init container (docs/bootstrap-modes.md,
"Transparent inbound capture").

With `capture.mode: iptables` the webhook adds an init container, from the sidecar image, that redirects
inbound TCP to the app's ports to the Envoy listener that forwards to each (agent/capture.py installs the
rules). The static bootstrap forwards its HTTP listener to one app port (`ports.upstream`) and its TCP
listener to another (`ports.tcpUpstream`), so capture is limited to those: a captured port Envoy does not
forward would be a black hole. Pure: `parse_capture` raises ValueError naming the dotted field,
`plan_capture` says what one pod gets or why it cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook import contract, podsecurity

CaptureMode = Literal["none", "iptables"]
CAPTURE_MODES: tuple[CaptureMode, ...] = ("none", "iptables")
# What iptables-nft needs in the pod's network namespace: it talks nf_tables over netlink, so NET_ADMIN
# alone (istio-init also asks for NET_RAW, which only the legacy backend's raw socket needs; checked with
# the capability bounding set cut to NET_ADMIN).
CAPABILITIES = ("NET_ADMIN",)
# The namespace label Pod Security admission enforces; the chart routes pods of namespaces that enforce
# one of these levels to /mutate/pod-security-enforced (webhookconfigurations.yaml).
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCING_LEVELS = ("baseline", "restricted")


@dataclass(frozen=True)
class Capture:
    """`mode` and the app ports to capture (empty: the app containers' declared TCP containerPorts)."""

    mode: CaptureMode = "none"
    ports: tuple[int, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def to_json(self) -> dict[str, Any]:
        """For the injection hash."""
        return {"mode": self.mode, "ports": list(self.ports)}


def parse_capture(raw: object) -> Capture:
    """The `capture` section; ValueError names the bad field."""
    if raw is None:
        return Capture()
    if not isinstance(raw, Mapping):
        raise ValueError(f"capture: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in ("mode", "ports"))
    if unknown:
        raise ValueError(f"capture.{unknown[0]}: unknown field")
    mode = next((m for m in CAPTURE_MODES if m == (raw.get("mode") or "none")), None)
    if mode is None:
        raise ValueError(f"capture.mode: must be one of {', '.join(CAPTURE_MODES)}, got {raw.get('mode')!r}")
    ports = raw.get("ports") or []
    if not isinstance(ports, list):
        raise ValueError("capture.ports: must be a list of ports")
    for index, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"capture.ports[{index}]: must be an integer in 1..65535, got {port!r}")
    if len(set(ports)) != len(ports):
        raise ValueError("capture.ports: a port is listed twice")
    return Capture(mode=mode, ports=tuple(ports))


def envoy_targets(*, upstream: int, listen: int, tcp_upstream: int, tcp_listen: int) -> dict[int, int]:
    """App port -> the static bootstrap's listener that forwards to it (HTTP first when both do)."""
    return {tcp_upstream: tcp_listen, upstream: listen}


def check_capture(capture: Capture, *, bootstrap_mode: str, targets: Mapping[int, int]) -> None:
    """Cross-field rules: capture needs the static bootstrap, and every listed port must be one Envoy
    forwards to. ValueError names the field."""
    if not capture.enabled:
        return
    if bootstrap_mode != "static":
        raise ValueError(
            f"capture.mode: iptables needs bootstrap.mode static (got {bootstrap_mode}): the redirect "
            "target of each app port is the static bootstrap's listener that forwards to it"
        )
    for index, port in enumerate(capture.ports):
        if port not in targets:
            raise ValueError(
                f"capture.ports[{index}]: {port} is not a port Envoy forwards to ({_forwarded(targets)}); "
                "traffic redirected there would reach no app"
            )


def _forwarded(targets: Mapping[int, int]) -> str:
    return "Envoy forwards " + ", ".join(
        f"{app} (listener {envoy})" for app, envoy in sorted(targets.items())
    )


@dataclass(frozen=True)
class CapturePlan:
    """The redirects (app port, Envoy port) for one pod, or why it cannot be captured (`refusal`: the reason
    label, the advice and the detail of an injection refusal)."""

    redirects: tuple[tuple[int, int], ...] = ()
    refusal: tuple[str, str, str] | None = None


def declared_tcp_ports(pod: Mapping[str, Any]) -> list[int]:
    """The TCP containerPorts of the pod's app containers (spec.containers), in order, once each."""
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, Mapping) else None
    found: list[int] = []
    for container in containers if isinstance(containers, list) else []:
        for port in container.get("ports") or [] if isinstance(container, Mapping) else []:
            if not isinstance(port, Mapping) or port.get("protocol", "TCP") != "TCP":
                continue
            number = port.get("containerPort")
            if isinstance(number, int) and not isinstance(number, bool) and number not in found:
                found.append(number)
    return found


def forbidden_capabilities() -> list[str]:
    """The capture container's capabilities that Pod Security `baseline` (and so `restricted`) forbids."""
    return [cap for cap in CAPABILITIES if cap not in podsecurity.BASELINE_CAPABILITIES]


def plan_capture(
    pod: Mapping[str, Any],
    capture: Capture,
    *,
    namespace: str,
    targets: Mapping[int, int],
    pair_ports: frozenset[int],
    pod_security_enforced: bool,
) -> CapturePlan:
    """What capture this pod gets. `pod_security_enforced`: the namespace enforces Pod Security baseline
    or restricted, whose admission would reject the pod with the capture container."""
    if pod_security_enforced:
        forbidden = ", ".join(forbidden_capabilities())
        return CapturePlan(
            refusal=(
                "capture-pod-security",
                f"capture needs {forbidden}; exempt the namespace or turn capture off",
                f"namespace {namespace} enforces Pod Security baseline or restricted ({ENFORCE_LABEL}), "
                f"which forbid {forbidden} in the {contract.CAPTURE_CONTAINER} init container",
            )
        )
    ports = list(capture.ports) or [p for p in declared_tcp_ports(pod) if p not in pair_ports]
    if not ports:
        return CapturePlan(
            refusal=(
                "capture-ports",
                "declare the app's containerPort or set capture.ports",
                "the app containers declare no TCP containerPort to capture",
            )
        )
    unforwarded = [p for p in ports if p not in targets]
    if unforwarded:
        return CapturePlan(
            refusal=(
                "capture-ports",
                "set capture.ports to the ports Envoy forwards to",
                f"containerPort {', '.join(map(str, unforwarded))} is not forwarded by Envoy; "
                f"{_forwarded(targets)}",
            )
        )
    return CapturePlan(redirects=tuple((port, targets[port]) for port in ports))


def capture_container(
    redirects: tuple[tuple[int, int], ...],
    *,
    image: str,
    pull_policy: str | None,
    resources: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """The init container that installs the redirects: root with NET_ADMIN only, every other capability
    dropped, no privilege escalation, a read-only root filesystem."""
    container: dict[str, Any] = {"name": contract.CAPTURE_CONTAINER, "image": image}
    if pull_policy is not None:
        container["imagePullPolicy"] = pull_policy
    container["command"] = [contract.AGENT_BINARY, "capture"]
    value = ",".join(f"{app}:{envoy}" for app, envoy in redirects)
    container["env"] = [{"name": contract.ENV_CAPTURE_REDIRECTS, "value": value}]
    container["resources"] = resources
    container["securityContext"] = {
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"add": list(CAPABILITIES), "drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return container
