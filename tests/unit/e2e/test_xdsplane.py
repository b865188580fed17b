"""The in-cluster xDS control plane of e2e/test_xds.py: the name pods pull it by, its manifests, and the
ACKs read from its log."""

from __future__ import annotations

from e2e import xdsplane
from localcluster import registry, xds
from podharness.xdsconfig import LISTENER, ROUTE

ENDPOINTS = registry.Endpoints(
    public="10.1.2.3:5000", private="10.1.2.3:5001", username="u", password="p", ca_file="/ca.crt"
)
ARCHIVE_NAME = "docker.io/sidecar-hotupgrade/xds-server:0123456789abcdef"


def test_pods_pull_it_from_the_public_instance_or_by_its_loaded_plain_name() -> None:
    plain = "sidecar-hotupgrade/xds-server:0123456789abcdef"
    assert xdsplane.reference(ENDPOINTS, ARCHIVE_NAME) == f"10.1.2.3:5000/{plain}"
    assert xdsplane.reference(None, ARCHIVE_NAME) == plain


def test_the_service_carries_ads_to_the_pods_ads_port_and_readiness_is_the_http_api() -> None:
    deployment, service = xdsplane.deployment("img:1"), xdsplane.service()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "img:1"
    assert {p["containerPort"] for p in container["ports"]} == {xds.ADS_PORT, xds.HTTP_PORT}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": xds.HTTP_PORT}
    [port] = service["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (xds.ADS_PORT, xds.ADS_PORT)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels == deployment["spec"]["selector"]["matchLabels"]
    assert ",".join(f"{k}={v}" for k, v in labels.items()) == xdsplane.SELECTOR


# As the server writes them (slog text, localcluster/xdsserver/status.go).
AT = "time=2026-11-30T01:00:01.000Z level=INFO"
LOG = "\n".join(
    [
        f'{AT} event=listening ads=0.0.0.0:18000 unix="" http=0.0.0.0:18001',
        f'{AT} event=subscribe stream=1 node=p.ns type={LISTENER} version="" names=0',
        f"{AT} event=ack stream=1 node=p.ns type={LISTENER} version=1 nonce=1",
        f"{AT} event=ack stream=1 node=p.ns type={ROUTE} version=2 nonce=7",
        f"{AT} event=ack stream=2 node=q.ns type={ROUTE} version=3 nonce=2",
        f'{AT} event=nack stream=1 node=p.ns type={ROUTE} version=4 running=2 nonce=9 error="no cluster x"',
    ]
)


def test_acks_are_read_per_node_and_nacks_are_not_acks() -> None:
    assert xdsplane.acked_versions(LOG, "p.ns") == {"1", "2"}
    assert xdsplane.acked_versions(LOG, "q.ns") == {"3"}
    assert xdsplane.acked_versions(LOG, "r.ns") == set()
