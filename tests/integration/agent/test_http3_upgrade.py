"""What a hot upgrade does to HTTP/3 (QUIC) and to raw UDP, measured by the clients themselves on a real pod
(docs/bootstrap-modes.md, "UDP and QUIC listeners"): an aioquic client with one long-lived connection
and one new connection per 0.2 s, and one UDP flow through udp_proxy, each outcome counted by phase.

Envoy 1.40 hands the UDP listen sockets over like TCP ones; while the old Envoy drains, the new one does
not read the QUIC socket and the old one forwards packets of connections it does not know to the new one
over the hot-restart socket. Established QUIC connections stay with the old Envoy until it exits.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from podharness.pod import Pod
from tests.integration.agent.checks import assert_serving, start_load
from tests.integration.agent.h3client import H3Probe
from tests.integration.agent.test_stalled_child import UDP_PARENT_SHUTDOWN_SECONDS, udp_pod
from tests.integration.agent.udpquic import QUIC_PORT, UdpProbe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_http3_and_udp_across_a_hot_upgrade(pod: Pod, tmp_path: Path) -> None:
    sidecars = udp_pod(
        pod, tmp_path, skip_parent_stats=False, parent_shutdown=UDP_PARENT_SHUTDOWN_SECONDS, provoke=False
    )
    load = start_load(sidecars)
    h3 = H3Probe(sidecars.pod.ip, QUIC_PORT).start()
    udp = UdpProbe(sidecars.pod.ip).start()
    try:
        time.sleep(2.0)
        timings = sidecars.upgrade("b")
        time.sleep(2.0)
    finally:
        h3.stop()
        udp.stop()
        summary = load.stop()
    assert_serving(sidecars, "b", 1)
    first = min(row[0] for row in h3.outcomes)
    end = time.time() + 1
    phases = {
        "before": (first, timings.started),
        "takeover": (timings.started, timings.live),
        "drain": (timings.live, timings.retired),
        "after": (timings.retired, end),
    }
    h3_figures = {
        name: {kind: h3.between(kind, *window) for kind in ("long", "new")} for name, window in phases.items()
    }
    udp_figures = {name: udp.lost_between(*window) for name, window in phases.items()}
    for name in phases:
        print(
            f"{name}: HTTP/3 (requests, failed, how) {h3_figures[name]}; UDP (sent, lost) {udp_figures[name]}"
        )
    print(f"long-lived HTTP/3 connections opened: {h3.long_connections}; drain {timings.drain_s():.1f}s")
    assert summary["failed"] == 0, summary["failures"]
    # HTTP/3 and UDP work before the upgrade and after it, on the new Envoy.
    for name in ("before", "after"):
        for kind in ("long", "new"):
            requests, failed, _ = h3_figures[name][kind]
            assert requests > 0 and failed == 0, (name, kind, h3_figures[name])
        sent, lost = udp_figures[name]
        assert sent > 0 and lost == 0, (name, udp_figures[name])
    # New HTTP/3 connections during the take-over and the drain reach the new Envoy (the old one forwards
    # their packets): none fails.
    for name in ("takeover", "drain"):
        requests, failed, how = h3_figures[name]["new"]
        assert requests > 0 and failed == 0, (name, how)
    # An established connection stays with the old Envoy and ends with it: this client does not act on
    # HTTP/3 GOAWAY, so its one request in flight when the old Envoy closes the connection (or exits) fails;
    # nothing else does, and nothing before the drain.
    long_failures = [row for row in h3.outcomes if row[1] == "long" and not row[2]]
    live_at = timings.state_serving_since or timings.live
    print(
        "long-lived failures (s after LIVE, how):",
        [(round(t - live_at, 1), how) for t, _, _, how in long_failures],
    )
    assert len(long_failures) <= 1, long_failures
    assert all(timings.live - 1 <= t < timings.retired + 1 for t, *_ in long_failures), long_failures
