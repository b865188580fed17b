"""Which ports of the pod's network namespace are already taken, and whether the pair would collide.

Two containers of a pod that bind the same TCP port: the second one fails to start, and a pod whose
sidecar cannot bind its listener never becomes Ready. So the injector refuses a pod when a port the pair
binds is declared by one of the pod's containers, or belongs to a known co-resident proxy (which binds its
ports without declaring them). Pure data and functions, no I/O.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.config import WebhookConfig


@dataclass(frozen=True)
class KnownProxy:
    """A proxy another injector puts into pods, how to recognise it, and the ports it binds in the pod."""

    name: str
    containers: frozenset[str]  # container or init container names
    annotations: frozenset[str]  # annotation keys its injector writes
    ports: range | frozenset[int]

    def port_text(self) -> str:
        if isinstance(self.ports, range):
            return f"{self.ports.start}-{self.ports.stop - 1}"
        return ", ".join(str(port) for port in sorted(self.ports))


KNOWN_PROXIES = (
    # Istio's sidecar documents 15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053 and 15090
    # (istio.io docs/ops/deployment/requirements, "Ports used by Istio") and adds new ones in that range;
    # its ambient mode's ztunnel listens on 15001, 15006 and 15008 inside the pod's network namespace.
    KnownProxy(
        name="istio",
        containers=frozenset({"istio-proxy", "istio-init", "istio-validation"}),
        annotations=frozenset({"sidecar.istio.io/status", "ambient.istio.io/redirection"}),
        ports=range(15000, 15091),
    ),
    # linkerd2-proxy: outbound 4140, inbound 4143, tap 4190, admin 4191 (its startup log lines).
    KnownProxy(
        name="linkerd",
        containers=frozenset({"linkerd-proxy", "linkerd-init", "linkerd-network-validator"}),
        annotations=frozenset({"linkerd.io/proxy-version"}),
        ports=frozenset({4140, 4143, 4190, 4191}),
    ),
)


@dataclass(frozen=True)
class Clash:
    """One port the pair needs that is taken: which pair setting, and by whom."""

    port: int
    setting: str  # e.g. "ports.listen"
    owner: str  # e.g. "container 'ledger'" or "istio (container istio-proxy)"
    owner_ports: str  # what the owner binds, e.g. "15002" or "15000-15090"

    def describe(self) -> str:
        return f"{self.port} ({self.setting})"


def pair_ports(config: WebhookConfig) -> dict[int, str]:
    """The TCP ports the pair binds in the pod, with the config setting of each."""
    ports = config.ports
    return {
        ports.status_a: "ports.statusA",
        ports.status_b: "ports.statusB",
        ports.admin: "ports.admin",
        ports.listen: "ports.listen",
        ports.tcp_listen: "ports.tcpListen",
    }


def _containers(spec: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for key in ("initContainers", "containers"):
        items = spec.get(key)
        for container in items if isinstance(items, list) else []:
            if isinstance(container, Mapping):
                yield container


def declared_ports(spec: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    """(port, container name) for every TCP containerPort the pod declares."""
    for container in _containers(spec):
        ports = container.get("ports")
        for port in ports if isinstance(ports, list) else []:
            if not isinstance(port, Mapping) or port.get("protocol", "TCP") != "TCP":
                continue  # UDP and SCTP ports do not collide with the pair's TCP listeners
            number = port.get("containerPort")
            if isinstance(number, int) and not isinstance(number, bool):
                yield number, str(container.get("name"))


def present_proxies(pod: Mapping[str, Any]) -> Iterator[tuple[KnownProxy, str]]:
    """Each known proxy in the pod, with the evidence (a container name or an annotation key)."""
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    spec = pod.get("spec")
    containers = _containers(spec) if isinstance(spec, Mapping) else iter(())
    names = {name for c in containers if isinstance(name := c.get("name"), str)}
    for proxy in KNOWN_PROXIES:
        found = sorted(names & proxy.containers)
        if found:
            yield proxy, f"container {found[0]}"
            continue
        keys = sorted(
            k for k in (annotations if isinstance(annotations, Mapping) else {}) if k in proxy.annotations
        )
        if keys:
            yield proxy, f"annotation {keys[0]}"


def clashes(pod: Mapping[str, Any], config: WebhookConfig) -> tuple[list[Clash], list[Clash]]:
    """The pair's ports declared by the pod's own containers, and those of known co-resident proxies."""
    needed = pair_ports(config)
    spec = pod.get("spec")
    declared = [
        Clash(port, needed[port], f"container {name!r}", str(port))
        for port, name in (declared_ports(spec) if isinstance(spec, Mapping) else [])
        if port in needed
    ]
    proxies = [
        Clash(port, setting, f"{proxy.name} ({evidence})", proxy.port_text())
        for proxy, evidence in present_proxies(pod)
        for port, setting in sorted(needed.items())
        if port in proxy.ports
    ]
    return declared, proxies
