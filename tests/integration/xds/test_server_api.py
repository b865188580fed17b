"""The xDS test server's own contract, without Envoy: what a push accepts and refuses, its log, a clean
stop on SIGTERM, and a restart on the same addresses with or without its snapshots."""

from __future__ import annotations

import re
from typing import Any

import pytest

from podharness.xds import ControlPlane, PushRejectedError
from podharness.xdsconfig import CLUSTER, Snapshot, eds_cluster, http_service, load_assignment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DUPLICATE = 'duplicate type.googleapis.com/envoy.config.cluster.v3.Cluster "c"'
DURATION = {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1s"}
UNKNOWN = {"@type": "type.googleapis.com/no.such.Type"}
SERVICE = http_service("1", port=15001, cluster="app", endpoints=[("127.0.0.1", 8000)])
# One event per line: slog's text form with the message key renamed to "event".
EVENT_LINE = re.compile(r'^time=\S+ level=(INFO|WARN|ERROR) event=[a-z-]+( [a-z_]+=("([^"\\]|\\.)*"|\S*))*$')


def cluster(**fields: Any) -> dict[str, Any]:
    return {"@type": CLUSTER, "name": "c", "type": "STATIC", "connect_timeout": "1s", **fields}


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        pytest.param((eds_cluster("app"),), "inconsistent snapshot", id="eds-name-not-in-snapshot"),
        pytest.param(
            (eds_cluster("app"), load_assignment("app", []), load_assignment("other", [])),
            "inconsistent snapshot",
            id="unreferenced-endpoints",
        ),
        pytest.param((cluster(connect_timeout="-1s"),), "ConnectTimeout", id="proto-validation"),
        pytest.param((cluster(), cluster()), DUPLICATE, id="duplicate"),
        pytest.param((cluster(name=""),), "no name", id="no-name"),
        pytest.param((DURATION,), "not an xDS resource type", id="not-xds"),
        pytest.param((UNKNOWN,), "unable to resolve", id="unknown-type"),
        pytest.param((cluster(no_such_field=1),), "unknown field", id="unknown-field"),
    ],
)  # fmt: skip
def test_a_push_the_server_cannot_serve_is_refused_with_its_reason(
    control_plane: ControlPlane, resources: tuple[dict[str, Any], ...], reason: str
) -> None:
    with pytest.raises(PushRejectedError, match=re.escape(reason)):
        control_plane.push("n", Snapshot("1", resources))
    assert control_plane.status()["snapshots"] == {}


def test_an_empty_version_is_refused(control_plane: ControlPlane) -> None:
    with pytest.raises(PushRejectedError, match="no version"):
        control_plane.push("n", Snapshot("", SERVICE.resources))


def test_validate_false_serves_an_inconsistent_snapshot(control_plane: ControlPlane) -> None:
    """For tests that need Envoy stuck waiting for a resource (a listener whose routes never come)."""
    control_plane.push("n", Snapshot("1", (eds_cluster("app"),)), validate=False)
    assert control_plane.status()["snapshots"]["n"]["resources"] == {CLUSTER: ["app"]}


def test_status_lists_snapshots_by_node_before_any_envoy_connects(control_plane: ControlPlane) -> None:
    control_plane.push("n", SERVICE)
    control_plane.push("*", SERVICE)
    status = control_plane.status()
    assert status["streams"] == [] and status["nodes"] == {}
    assert {node: (s["version"], s["default"]) for node, s in status["snapshots"].items()} == {
        "n": ("1", False),
        "*": ("1", True),
    }
    assert status["snapshots"]["n"]["resources"] == {
        t: sorted(SERVICE.names(t)) for t in {r["@type"] for r in SERVICE.resources}
    }


def test_sigterm_stops_cleanly_and_a_restart_keeps_addresses_and_optionally_snapshots(
    control_plane: ControlPlane,
) -> None:
    control_plane.push("n", SERVICE)
    ports = (control_plane.ads_port, control_plane.http_port)
    assert control_plane.stop() == 0

    control_plane.start(keep_snapshots=True)
    assert (control_plane.ads_port, control_plane.http_port) == ports
    assert control_plane.status()["snapshots"]["n"]["version"] == "1"

    control_plane.restart(keep_snapshots=False)
    assert (control_plane.ads_port, control_plane.http_port) == ports
    assert control_plane.status()["snapshots"] == {}
    assert control_plane.stop() == 0

    lines = [line for line in control_plane.logs().splitlines() if not line.startswith("=== start #")]
    assert [line for line in lines if not EVENT_LINE.match(line)] == []
    events = [re.search(r"event=(\S+)", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert events.count("listening") == 3 and events.count("stopped") == 3
    assert events.count("push") == 2, "the push over HTTP, then the snapshot file at the first restart"
