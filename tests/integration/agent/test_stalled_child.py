"""The stalled-child watchdog and `--skip-hot-restart-parent-stats` on a real pod (docs/contract.md
"A stalled child", docs/bootstrap-modes.md "UDP and QUIC listeners").

- A child stopped before LIVE (SIGSTOP once its admin API answered, while it waits for a control plane
  that is down): its agent ends it, clears the INITIALIZING flag, the old Envoy serves on, the slot fails
  with `child_stalled` well before the take-over deadline; the next upgrade succeeds.
- The real wedge (envoy#34069): QUIC packets no connection owns flood the old Envoy while it drains, so
  it forwards them to the new one over the hot-restart socket; the new one's main thread waits for its
  Stats reply for good. Its agent sends that reply each time, 3 s into the silence; the old Envoy ends
  within its parent-shutdown time plus its agent's hung-Envoy grace; no HTTP request fails.
- The same with `skipHotRestartParentStats`: no stall, the upgrade completes, the UDP flow is measured.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agent import contract, hotrestart
from agent.decisions import HUNG_PARENT_GRACE_SECONDS, INITIALIZING_FLAG
from agent.progress import LIVE_STALL_SECONDS, STALL_SECONDS
from podharness.metrics import sample
from podharness.pod import Pod
from podharness.sidecar import SidecarPod, make_image
from tests.integration.agent.checks import assert_serving, start_load
from tests.integration.agent.conftest import DRAIN_SECONDS
from tests.integration.agent.udpquic import (
    Flood,
    UdpProbe,
    start_udp_echo,
    udp_env,
    udp_template,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

# Past the new Envoy's first two stats flushes after the drain began (Envoy flushes every 5 s), so the
# wedge happens while the old Envoy still drains; it may then outlive this by up to the old agent's
# hung-Envoy kill (parent shutdown + 10 s) while it works off the packets it queued to forward.
WEDGE_PARENT_SHUTDOWN_SECONDS = 15
# A burst of QUIC traffic over the take-over and the new Envoy's first two flushes, then quiet, so the
# wedge is not made again at every later flush until the Terminate.
FLOOD_SECONDS = 14.0
UDP_PARENT_SHUTDOWN_SECONDS = 12


def events(sidecars: SidecarPod, slot: str) -> list[dict[str, Any]]:
    lines = sidecars.container(slot).logs().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_child_stopped_before_live_is_ended_and_the_old_envoy_serves_on(
    sidecar_pod: SidecarPod, tmp_path: Path
) -> None:
    # A control plane nobody runs: the new Envoy answers its admin API, then waits for LDS and CDS.
    down = make_image(
        sidecar_pod.pod.base,
        "sidecar:xds-down",
        env={contract.ENV_BOOTSTRAP_MODE: "xds", contract.ENV_XDS_ADDRESS: f"127.0.0.1:{free_port()}"},
    )
    load = start_load(sidecar_pod)
    try:
        sidecar_pod.stop("b")
        sidecar_pod.start_sidecar("b", down)
        sidecar_pod.wait_for(
            "epoch 1 answers its admin API while initialising",
            lambda: sidecar_pod.envoy_server_info()["command_line_options"]["restart_epoch"] == 1,
            timeout=60,
        )
        # Its agent polls too (between reads of the old Envoy's stats): let it see an answer first. A child
        # that never answered is the handshake bound's case (test_hung_envoy.py).
        time.sleep(3.0)
        child = sidecar_pod.envoy_pids("b")
        assert len(child) == 1, child
        os.kill(child[0], signal.SIGSTOP)
        stopped = time.monotonic()
        rc, out = sidecar_pod.post_start("b")
        took = time.monotonic() - stopped
        print(f"stalled child ended {took:.1f}s after its SIGSTOP (stall bound {STALL_SECONDS:.0f}s)")
        assert rc == 0 and "phase failed" in out and "slot a serves on" in out, out  # agent/hook.py
        assert "stopped answering its admin API before it was LIVE" in out
        assert took < STALL_SECONDS + 10, "bounded by the stall time, well before the take-over deadline"
        status = sidecar_pod.status("b")
        assert status["phase"] == "failed"
        assert status["stall"]["action"] == "abandon" and status["stall"]["initializing"] is True
        metrics = sidecar_pod.metrics("b")
        assert sample(metrics, "hotupgrade_agent_failures_total", {"reason": "child_stalled"}) == 1
        assert sample(metrics, "hotupgrade_agent_child_stalls_total", {"action": "abandon"}) == 1
        assert sidecar_pod.envoy_pids("b") == [], "the stalled child is killed"
        layout = hotrestart.layout_from_hot_restart_version(status["hot_restart_version"])
        flags = hotrestart.read_flags(hotrestart.shm_path(sidecar_pod.pod.shm_dir, contract.BASE_ID), layout)
        assert flags is not None and not flags & INITIALIZING_FLAG, "the flag it left set is cleared"
        assert_serving(sidecar_pod, "a", 0, admin=False)
        time.sleep(1.0)
    finally:
        summary = load.stop()
    assert summary["requests"] > 0
    assert summary["failed"] == 0, summary["failures"]
    # The controller rolls b back; the next upgrade starts from the same old Envoy and succeeds.
    assert sidecar_pod.stop("b") == 0
    sidecar_pod.start_empty("b")
    sidecar_pod.upgrade("b")
    assert_serving(sidecar_pod, "b", 1)


def udp_pod(
    pod: Pod, tmp_path: Path, *, skip_parent_stats: bool, parent_shutdown: int, provoke: bool = True
) -> SidecarPod:
    # The race made likely: a unix datagram socket holds up to net.unix.max_dgram_qlen + 1 unread datagrams
    # (the sysctl is 10 by default, per network namespace, read when a socket is created), and the wedge
    # needs more forwarded packets than that to arrive while the new Envoy waits for its Stats reply. With
    # 0, a flood from a busy 2-core machine makes it at the first flushes instead of now and then. The
    # hot-restart messages themselves are one request and one reply at a time: they never queue two.
    if provoke:
        subprocess.run(
            ["ip", "netns", "exec", pod.netns, "sysctl", "-qw", "net.unix.max_dgram_qlen=0"], check=True
        )
    env = udp_env(udp_template(tmp_path), skip_parent_stats=skip_parent_stats)
    sidecars = SidecarPod(
        pod, drain_seconds=DRAIN_SECONDS, parent_shutdown_seconds=parent_shutdown, extra_env=env
    )
    start_udp_echo(sidecars)
    sidecars.start_pod()
    return sidecars


def test_the_udp_forwarding_wedge_is_unblocked_by_the_new_agent(pod: Pod, tmp_path: Path) -> None:
    sidecars = udp_pod(pod, tmp_path, skip_parent_stats=False, parent_shutdown=WEDGE_PARENT_SHUTDOWN_SECONDS)
    load = start_load(sidecars)
    flood = Flood(sidecars.pod.ip, seconds=FLOOD_SECONDS).start()
    try:
        time.sleep(0.5)
        timings = sidecars.upgrade("b")
    finally:
        sent = flood.stop()
        summary = load.stop()
    drain = timings.drain_s()
    print(f"wedge: {sent} QUIC packets flooded; old Envoy retired {drain:.1f}s after the new one was LIVE")
    stalls = [e for e in events(sidecars, "b") if e["event"] == "child-stalled"]
    live_at = timings.state_serving_since or timings.live
    print(
        "stalls (s after LIVE, silent s):",
        [(round(e["ts"] - live_at, 1), e["silent_seconds"]) for e in stalls],
        "old Envoy's end:",
        sidecars.state()["slots"]["a"]["error"] or "its Terminate",
    )
    assert stalls and all(e["action"] == "unblock" and e["live"] for e in stalls), (drain, sidecars.state())
    assert all(e["silent_seconds"] < LIVE_STALL_SECONDS + 3 for e in stalls), (
        "each wedge ended in bounded time"
    )
    unblocks = sample(sidecars.metrics("b"), "hotupgrade_agent_child_stalls_total", {"action": "unblock"})
    assert unblocks == len(stalls)
    assert sidecars.status("b")["stall"]["action"] == "unblock"
    # The old Envoy works off the packets it queued to forward before it reads the Terminate: it exits by
    # itself, or its agent ends it as hung (docs/contract.md "A hung or dead old Envoy"); either way in time.
    assert drain < WEDGE_PARENT_SHUTDOWN_SECONDS + HUNG_PARENT_GRACE_SECONDS + 3
    assert_serving(sidecars, "b", 1)  # its admin API answers: the main thread runs
    assert summary["failed"] == 0, summary["failures"]


def test_with_skip_parent_stats_a_udp_and_quic_upgrade_completes_without_a_stall(
    pod: Pod, tmp_path: Path
) -> None:
    sidecars = udp_pod(pod, tmp_path, skip_parent_stats=True, parent_shutdown=UDP_PARENT_SHUTDOWN_SECONDS)
    assert sidecars.envoy_server_info()["command_line_options"]["skip_hot_restart_parent_stats"] is True
    load = start_load(sidecars)
    probe = UdpProbe(sidecars.pod.ip).start()
    # The same burst as in the wedge test above.
    flood = Flood(sidecars.pod.ip, seconds=FLOOD_SECONDS).start()
    try:
        time.sleep(1.0)
        timings = sidecars.upgrade("b")
        time.sleep(1.0)
    finally:
        sent = flood.stop()
        probe.stop()
        summary = load.stop()
    ended = sidecars.state()["slots"]["a"]["error"] or "its Terminate"
    print(f"skip: old Envoy retired {timings.drain_s():.1f}s after the new one was LIVE, ended by {ended}")
    assert [e for e in events(sidecars, "b") if e["event"] == "child-stalled"] == []
    assert sidecars.status("b")["stall"] is None
    # The old Envoy reads the Terminate once it has forwarded what it queued; its agent bounds that.
    assert timings.drain_s() < UDP_PARENT_SHUTDOWN_SECONDS + HUNG_PARENT_GRACE_SECONDS + 3
    assert_serving(sidecars, "b", 1)
    assert sidecars.envoy_server_info()["command_line_options"]["skip_hot_restart_parent_stats"] is True
    assert summary["failed"] == 0, summary["failures"]
    start, end = min(probe.sent.values()), max(probe.sent.values())
    windows = {
        "before": (start, timings.started),
        "takeover": (timings.started, timings.live),
        "drain": (timings.live, timings.retired),
        "after": (timings.retired, end + 1),
    }
    figures = {name: probe.lost_between(*window) for name, window in windows.items()}
    print(f"udp flow (sent, not echoed) by phase: {figures}; {sent} QUIC packets flooded")
    assert figures["before"][0] > 0 and figures["before"][1] == 0, "the UDP listener works before"
    assert figures["after"][0] > 0
