"""The pod harness itself: namespaces as a pod has them, a manual hot restart, and a load generator that
does see failures. Without these the agent tests could pass for the wrong reason."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agent import contract
from podharness import envoyproc
from podharness.load import LoadConfig, LoadGenerator
from podharness.netns import NETNS_DIR
from podharness.pod import Pod
from podharness.sidecar import SidecarPod
from tests.integration.agent.checks import assert_hitless

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

IDLE = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"]


def _ns(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def _load(pod: Pod, *, request_timeout_s: float = 10.0) -> LoadGenerator:
    config = LoadConfig(
        host=pod.ip,
        http_port=contract.LISTEN_PORT,
        tcp_port=contract.TCP_LISTEN_PORT,
        tcp_connections=3,
        request_timeout_s=request_timeout_s,
    )
    return LoadGenerator(config).start()


def test_containers_share_network_shm_and_run_dir_but_not_pid_or_mounts(pod: Pod) -> None:
    one, two = pod.container("one"), pod.container("two")
    one.start(IDLE, {})
    two.start(IDLE, {})
    assert _ns(one.pid, "net") == _ns(two.pid, "net") != _ns(os.getpid(), "net")
    assert _ns(one.pid, "pid") != _ns(two.pid, "pid")
    assert _ns(one.pid, "mnt") != _ns(two.pid, "mnt")

    written = one.exec(
        ["/bin/sh", "-c", f"echo hi > /dev/shm/probe; echo run > {contract.RUN_DIR}/probe; echo $$"],
        {},
        timeout=10,
    )
    assert written.returncode == 0, written.stderr
    seen = two.exec(
        ["/bin/sh", "-c", f"cat /dev/shm/probe {contract.RUN_DIR}/probe; cat /proc/1/cmdline"], {}, timeout=10
    )
    assert seen.stdout.startswith("hi\nrun\n/bin/sh"), seen
    assert (pod.shm_dir / "probe").read_text() == "hi\n"
    assert (pod.run_dir / "probe").read_text() == "run\n"
    assert not Path("/dev/shm/probe").exists(), "the host's /dev/shm must not be the pod's"

    one.wait_catching(signal.SIGTERM, timeout=10)
    assert one.stop(grace=10) == 0
    assert not one.running() and two.running()


def test_close_removes_namespace_processes_and_shm(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pod = Pod(tmp_path, run_dir_mount=contract.RUN_DIR).create()
    pod.container("one").start(IDLE, {})
    pid = pod.container("one").pid
    assert (NETNS_DIR / pod.netns).exists()
    pod.close()
    assert not (NETNS_DIR / pod.netns).exists()
    assert not pod.shm_dir.exists()
    assert not Path(f"/proc/{pid}").exists()


def test_manual_hot_restart_across_containers_fails_no_request(pod: Pod) -> None:
    """Envoy epoch 0 -> 1 -> 2 across containers under load: the harness and the load agree it is clean."""
    sidecars = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=3)
    sidecars.start_app()
    config = envoyproc.write_bootstrap(pod.base)

    def start(name: str, epoch: int) -> None:
        pod.container(name).start(
            envoyproc.envoy_argv(config, epoch=epoch, drain_seconds=2, parent_shutdown_seconds=3), {}
        )

    start("a", 0)
    pod.wait_port(contract.LISTEN_PORT, timeout=30)
    load = _load(pod)
    time.sleep(1)
    for epoch, new, old in ((1, "b", "a"), (2, "a", "b")):
        start(new, epoch)
        assert pod.container(old).wait(timeout=30) == 0, "the parent exits 0 after Terminate"
        time.sleep(0.5)
    summary = load.stop()
    assert summary["requests"] > 1000
    assert summary["failed"] == 0, summary["failures"]
    assert_hitless(load, upgrades=2)
    assert len(load.record.tcp_closes) == 3 * 2, "each long-lived TCP connection closed once per restart"
    assert summary["http1_connection_close"] > 0 and summary["http2_goaway"] > 0, "the drain reached clients"


def test_load_generator_counts_what_a_killed_envoy_breaks(pod: Pod) -> None:
    """Negative control: SIGKILL Envoy under load with no successor; the generator must report it."""
    sidecars = SidecarPod(pod, drain_seconds=2, parent_shutdown_seconds=3)
    sidecars.start_app()
    config = envoyproc.write_bootstrap(pod.base)
    envoy = pod.container("a")
    envoy.start(envoyproc.envoy_argv(config, epoch=0, drain_seconds=2, parent_shutdown_seconds=3), {})
    pod.wait_port(contract.LISTEN_PORT, timeout=30)
    load = _load(pod, request_timeout_s=2)
    time.sleep(1)
    envoy.signal(signal.SIGKILL)
    time.sleep(1)
    summary = load.stop()
    assert summary["failed"] > 0
    assert summary["by_kind"]["http1"]["failed"] > 0 and summary["by_kind"]["http2"]["failed"] > 0
    assert summary["tcp_failed"] > 0, "reconnecting to a dead listener is refused"
    # The kernel ends an idle socket of a killed process with a FIN too: a FIN alone proves nothing,
    # which is why the upgrade tests also check *when* TCP connections were closed.
