"""What an xDS-fed Envoy is told, as plain data: snapshots for the xDS test server and the test bootstrap.

Resources are Envoy v3 proto JSON with their "@type", exactly what the server (localcluster/xdsserver)
unmarshals with protojson. The builders cover the common cases: an HTTP listener on a port whose routes
come by RDS, EDS clusters and their endpoints, a tcp_proxy listener. Everything travels over ADS, so a
snapshot is consistent by construction: every RDS/EDS name referred to is in it. No I/O here.

The bootstrap is the tests' own (ADS cluster to the server, LDS and CDS by ADS); the product's `xds`
bootstrap mode is a separate template owned by the agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Resource = dict[str, Any]

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
HTTP_PROTOCOL_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

ADS: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
XDS_CLUSTER = "xds"


@dataclass(frozen=True)
class Route:
    """One route of the catch-all virtual host: a path prefix to a cluster, with response headers to add."""

    prefix: str
    cluster: str
    response_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """One version of everything a node gets; `document()` is the body of PUT /snapshots/{node}."""

    version: str
    resources: tuple[Resource, ...]

    def document(self) -> dict[str, Any]:
        return {"version": self.version, "resources": list(self.resources)}

    def names(self, type_url: str) -> list[str]:
        return [resource_name(r) for r in self.resources if r["@type"] == type_url]


def resource_name(resource: Resource) -> str:
    """A resource's xDS name: `name`, or `cluster_name` for a ClusterLoadAssignment."""
    return str(resource["cluster_name"] if resource["@type"] == ENDPOINT else resource["name"])


def socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def http_listener(name: str, port: int, route_config: str, *, address: str = "0.0.0.0") -> Resource:
    """An HTTP/1.1 + h2c listener whose routes come by RDS over ADS.

    drain_timeout as in the static harness bootstrap (podharness/envoy.yaml.tmpl): shorter than the
    parent-shutdown time, so drained HTTP/2 connections end before the old Envoy exits.
    """
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "codec_type": "AUTO",
        "drain_timeout": "1s",
        "rds": {"route_config_name": route_config, "config_source": ADS},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "@type": LISTENER,
        "name": name,
        "address": socket_address(address, port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def tcp_listener(name: str, port: int, cluster: str, *, address: str = "0.0.0.0") -> Resource:
    """A tcp_proxy listener to one cluster."""
    proxy = {"@type": TCP_PROXY, "stat_prefix": name, "cluster": cluster}
    return {
        "@type": LISTENER,
        "name": name,
        "address": socket_address(address, port),
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy", "typed_config": proxy}]}],
    }


def route_configuration(name: str, routes: Sequence[Route]) -> Resource:
    """One virtual host for every domain with routes in order (the first matching prefix wins)."""
    return {
        "@type": ROUTE,
        "name": name,
        "virtual_hosts": [
            {"name": name, "domains": ["*"], "routes": [_route(r) for r in routes]},
        ],
    }


def _route(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {
        "match": {"prefix": route.prefix},
        "route": {"cluster": route.cluster, "timeout": "30s"},
    }
    if route.response_headers:
        out["response_headers_to_add"] = [
            {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
            for k, v in sorted(route.response_headers.items())
        ]
    return out


def eds_cluster(name: str) -> Resource:
    """A cluster whose endpoints come by EDS over ADS."""
    return {
        "@type": CLUSTER,
        "name": name,
        "type": "EDS",
        "connect_timeout": "1s",
        "eds_cluster_config": {"eds_config": ADS},
    }


def load_assignment(cluster: str, endpoints: Sequence[tuple[str, int]]) -> Resource:
    """The endpoints (host, port) of one EDS cluster."""
    return {
        "@type": ENDPOINT,
        "cluster_name": cluster,
        "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": socket_address(h, p)}} for h, p in endpoints]}
        ],
    }


def http_service(
    version: str,
    *,
    port: int,
    cluster: str,
    endpoints: Sequence[tuple[str, int]],
    routes: Sequence[Route] | None = None,
    listener: str = "http",
) -> Snapshot:
    """The common case: an HTTP listener on port routing (by default everything) to one EDS cluster.

    The route configuration is named after the listener; `routes` may name other clusters only if the
    caller adds them (see `with_resources`)."""
    return Snapshot(
        version=version,
        resources=(
            http_listener(listener, port, listener),
            route_configuration(listener, routes if routes is not None else (Route("/", cluster),)),
            eds_cluster(cluster),
            load_assignment(cluster, endpoints),
        ),
    )


def with_resources(snapshot: Snapshot, version: str, *extra: Resource) -> Snapshot:
    """The same resources plus extra ones (a TCP listener, another cluster), at a new version."""
    return Snapshot(version=version, resources=(*snapshot.resources, *extra))


def ads_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    admin_port: int,
    xds_address: tuple[str, int] | str,
    reconnect_max: str = "2s",
) -> dict[str, Any]:
    """A bootstrap with only the admin API and the ADS cluster; listeners and clusters come by LDS/CDS.

    xds_address is (host, port) or a unix socket path. reconnect_max caps the ADS stream's reconnect
    back-off (Envoy's default cap is 30 s), so a test's control-plane outage ends in seconds.
    """
    address = (
        {"pipe": {"path": xds_address}} if isinstance(xds_address, str) else socket_address(*xds_address)
    )
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": socket_address("127.0.0.1", admin_port)},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            "retry_policy": {
                                "retry_back_off": {"base_interval": "0.25s", "max_interval": reconnect_max}
                            },
                        }
                    }
                ],
            },
            "lds_config": ADS,
            "cds_config": ADS,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": HTTP_PROTOCOL_OPTIONS,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        }
                    },
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                }
            ]
        },
    }
