"""The xDS test fixture's pure parts: reading the server's status (ACKed? NACKed?) and the builders."""

from __future__ import annotations

from typing import Any

from podharness.sidecar import TCP_UPSTREAM_PORT, UPSTREAM_PORT
from podharness.xds import NackRecord, ServerAPI, Status, StreamState, TypeState, acked, nack_of
from podharness.xdsconfig import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    Route,
    Snapshot,
    ads_bootstrap,
    http_service,
    resource_name,
    tcp_listener,
    with_resources,
)
from podharness.xdspod import Pusher, endpoint_weights

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)


def type_state(acked_version: str) -> TypeState:
    return TypeState(
        names=None, version=acked_version, sent=acked_version, acked=acked_version, nacked="", error="",
        acks=1, nacks=0,
    )  # fmt: skip


def stream(node: str, acked_by_type: dict[str, str], stream_id: int = 1) -> StreamState:
    types = {t: type_state(v) for t, v in acked_by_type.items()}
    return StreamState(id=stream_id, node=node, peer="10.0.0.2:1", opened="", types=types)


def status(version: str, *streams: StreamState, empty_types: tuple[str, ...] = ()) -> Status:
    resources = {t: ([] if t in empty_types else ["x"]) for t in TYPES}
    return Status(
        snapshots={"n": {"version": version, "default": False, "pushed": "", "resources": resources}},
        streams=list(streams),
        nodes={},
    )


def all_types(version: str) -> dict[str, str]:
    return dict.fromkeys(TYPES, version)


def test_acked_needs_every_type_of_the_snapshot_on_every_stream_of_the_node() -> None:
    assert acked(status("2", stream("n", all_types("2"))), "n", "2")
    assert not acked(status("2", stream("n", {**all_types("2"), ROUTE: "1"})), "n", "2"), "RDS behind"
    assert not acked(status("2", stream("n", {t: "2" for t in TYPES if t != ENDPOINT})), "n", "2")
    two = status("2", stream("n", all_types("2"), 1), stream("n", all_types("1"), 2))
    assert not acked(two, "n", "2"), "the second Envoy of a hot restart has not ACKed yet"
    assert acked(status("2", stream("n", all_types("2")), stream("other", all_types("1"), 2)), "n", "2")


def test_acked_ignores_types_without_resources_and_needs_a_stream_and_the_version() -> None:
    no_routes = {t: "2" for t in TYPES if t != ROUTE}
    assert acked(status("2", stream("n", no_routes), empty_types=(ROUTE,)), "n", "2")
    assert not acked(status("2"), "n", "2"), "nobody connected"
    assert not acked(status("3", stream("n", all_types("2"))), "n", "2"), "a newer snapshot is pushed"
    assert not acked(status("2", stream("n", all_types("2"))), "m", "2"), "no snapshot for that node"


def test_nack_of_is_the_last_nack_when_it_names_the_version() -> None:
    record = NackRecord(stream=1, type=ROUTE, version="2", error="bad", at="")
    st = status("2")
    st["nodes"]["n"] = {"streams": 1, "acks": 3, "nacks": 1, "last_nack": record}
    assert nack_of(st, "n", "2") == record
    assert nack_of(st, "n", "3") is None
    assert nack_of(st, "m", "2") is None
    st["nodes"]["n"]["last_nack"] = None
    assert nack_of(st, "n", "2") is None


def rds_names(listener: dict[str, Any]) -> list[str]:
    return [
        f["typed_config"]["rds"]["route_config_name"]
        for chain in listener["filter_chains"]
        for f in chain["filters"]
        if "rds" in f["typed_config"]
    ]


def test_http_service_is_consistent_as_ads_needs_it() -> None:
    """Every RDS/EDS name referred to is in the snapshot and nothing else (the server refuses otherwise)."""
    snap = http_service(
        "7",
        port=15001,
        cluster="app",
        endpoints=[("127.0.0.1", 8000), ("127.0.0.1", 8002)],
        routes=[Route("/new", "app", {"x-v": "7"}), Route("/", "app")],
    )
    assert snap.document()["version"] == "7"
    (listener,) = [r for r in snap.resources if r["@type"] == LISTENER]
    assert rds_names(listener) == snap.names(ROUTE) == ["http"]
    (route,) = [r for r in snap.resources if r["@type"] == ROUTE]
    routed = {r["route"]["cluster"] for vh in route["virtual_hosts"] for r in vh["routes"]}
    assert routed == set(snap.names(CLUSTER)) == set(snap.names(ENDPOINT)) == {"app"}
    first = route["virtual_hosts"][0]["routes"][0]
    assert first["match"] == {"prefix": "/new"}
    assert first["response_headers_to_add"][0]["header"] == {"key": "x-v", "value": "7"}
    (assignment,) = [r for r in snap.resources if r["@type"] == ENDPOINT]
    lb_endpoints = assignment["endpoints"][0]["lb_endpoints"]
    ports = [e["endpoint"]["address"]["socket_address"]["port_value"] for e in lb_endpoints]
    assert ports == [8000, 8002]


def test_with_resources_adds_at_a_new_version() -> None:
    base = http_service("1", port=15001, cluster="app", endpoints=[("127.0.0.1", 8000)])
    more = with_resources(base, "2", tcp_listener("tcp", 15002, "app"))
    assert (more.version, len(more.resources)) == ("2", len(base.resources) + 1)
    assert more.names(LISTENER) == ["http", "tcp"]
    assert [resource_name(r) for r in more.resources if r["@type"] == ENDPOINT] == ["app"]


def test_bootstrap_reaches_the_server_by_tcp_or_unix_socket() -> None:
    def address(boot: dict[str, Any]) -> dict[str, Any]:
        (xds,) = boot["static_resources"]["clusters"]
        return dict(xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"])

    tcp = ads_bootstrap(node_id="n", node_cluster="c", admin_port=15100, xds_address=("10.0.0.1", 18000))
    assert address(tcp) == {"socket_address": {"address": "10.0.0.1", "port_value": 18000}}
    assert tcp["node"] == {"id": "n", "cluster": "c"}
    dynamic = tcp["dynamic_resources"]
    assert dynamic["lds_config"] == dynamic["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    unix = ads_bootstrap(node_id="n", node_cluster="c", admin_port=15100, xds_address="/run/x/ads.sock")
    assert address(unix) == {"pipe": {"path": "/run/x/ads.sock"}}


def endpoint_ports(snapshot: Snapshot) -> dict[str, list[int]]:
    def ports(assignment: dict[str, Any]) -> list[int]:
        endpoints = [e["endpoint"] for g in assignment["endpoints"] for e in g["lb_endpoints"]]
        return [e["address"]["socket_address"]["port_value"] for e in endpoints]

    return {r["cluster_name"]: ports(r) for r in snapshot.resources if r["@type"] == ENDPOINT}


def test_the_pushers_snapshots_point_at_the_apps_ports() -> None:
    pusher = Pusher(ServerAPI("http://127.0.0.1:1"), "*", upstream_ports=(8080, 9000))
    snapshot = pusher.snapshot(4)
    assert endpoint_ports(snapshot) == {"app": [8080], "echo": [9000]}
    assert snapshot.version == "4" and endpoint_weights(snapshot) == {1}
    assert endpoint_weights(pusher.snapshot(3)) == {2}
    assert Pusher(ServerAPI("http://127.0.0.1:1"), "n").upstream_ports == (UPSTREAM_PORT, TCP_UPSTREAM_PORT)
