"""The pair's default ports stay clear of the ports known co-resident proxies bind (webhook/portclash.py)."""

import json
from pathlib import Path
from typing import Any

from webhook.config import WebhookConfig, parse_config
from webhook.portclash import KNOWN_PROXIES, clashes, pair_ports

# Istio's reserved range (istio.io docs/ops/deployment/requirements, "Ports used by Istio").
ISTIO_RESERVED = range(15000, 15091)
ISTIO_POD = Path(__file__).parent / "testdata" / "cases" / "istio-injected-pod.json"


def istio_pod() -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(ISTIO_POD.read_text())
    return pod


def test_the_default_ports_avoid_istios_reserved_range() -> None:
    ports = pair_ports(WebhookConfig())
    assert len(ports) == 5, "every port the pair binds, each once"
    assert [port for port in ports if port in ISTIO_RESERVED] == []


def test_the_default_ports_avoid_every_known_proxy_and_form_one_block() -> None:
    ports = set(pair_ports(WebhookConfig()))
    for proxy in KNOWN_PROXIES:
        assert ports.isdisjoint(proxy.ports), proxy.name
    assert ports <= set(range(15100, 15120)), sorted(ports)


def test_an_istio_pod_clashes_only_when_a_pair_port_is_moved_into_istios_range() -> None:
    assert clashes(istio_pod(), WebhookConfig()) == ([], [])
    moved = parse_config({"ports": {"listen": 15001}})
    declared, proxies = clashes(istio_pod(), moved)
    assert declared == []
    assert [(c.port, c.setting, c.owner_ports) for c in proxies] == [(15001, "ports.listen", "15000-15090")]


def test_a_port_the_app_declares_still_clashes_with_the_default_ports() -> None:
    pod = istio_pod()
    ports = [{"containerPort": port} for port in (8080, 15111)]
    pod["spec"]["containers"].append({"name": "ledger", "image": "ledger:1", "ports": ports})
    declared, _ = clashes(pod, WebhookConfig())
    found = [(c.port, c.setting, c.owner) for c in declared]
    assert found == [(15111, "ports.tcpListen", "container 'ledger'")]
