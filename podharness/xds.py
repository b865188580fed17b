"""The xDS test server as a process the tests drive: start, push snapshots, wait for ACKs, stop, restart.

The server is localcluster/xdsserver (go-control-plane, ADS over gRPC, state of the world), built and
cached by localcluster.xds. It runs on the host, outside any pod: a pod's Envoy reaches it over the pod's
veth (`ads_host` = the pod's host-side address), the way a sidecar reaches a control-plane Service.
Its HTTP API listens on 127.0.0.1 only. `acked` and `nack_of` read the server's /status and decide;
the classes around them do the I/O: `ServerAPI` talks to a running server at any URL (the e2e suite's runs
in the cluster, e2e/xdsplane.py), `ControlPlane` also runs the process.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, cast

from localcluster.xds import ensure_binary
from podharness.xdsconfig import Snapshot

READY_TIMEOUT_S = 30.0


class TypeState(TypedDict):
    """One resource type on one ADS stream: latest request, latest response, latest ACK and NACK."""

    names: list[str] | None
    version: str
    sent: str
    acked: str
    nacked: str
    error: str
    acks: int
    nacks: int


class StreamState(TypedDict):
    id: int
    node: str
    peer: str
    opened: str
    types: dict[str, TypeState]


class NackRecord(TypedDict):
    stream: int
    type: str
    version: str
    error: str
    at: str


class NodeState(TypedDict):
    streams: int
    acks: int
    nacks: int
    last_nack: NackRecord | None


class SnapshotState(TypedDict):
    version: str
    default: bool
    pushed: str
    resources: dict[str, list[str]]


class Status(TypedDict):
    """GET /status of the server (localcluster/xdsserver/status.go and store.go)."""

    snapshots: dict[str, SnapshotState]
    streams: list[StreamState]
    nodes: dict[str, NodeState]


def node_streams(status: Status, node: str) -> list[StreamState]:
    """The node's open ADS streams (two while a hot restart has both Envoys connected)."""
    return [s for s in status["streams"] if s["node"] == node]


def acked(status: Status, node: str, version: str) -> bool:
    """Whether the node's snapshot is at version and every open stream of the node ACKed it for every
    resource type the snapshot has resources of (at least one stream)."""
    snapshot = status["snapshots"].get(node)
    if snapshot is None or snapshot["version"] != version:
        return False
    types = [t for t, names in snapshot["resources"].items() if names]
    streams = node_streams(status, node)
    return bool(streams) and all(
        t in s["types"] and s["types"][t]["acked"] == version for s in streams for t in types
    )


def nack_of(status: Status, node: str, version: str) -> NackRecord | None:
    """The node's latest NACK if it rejected version, else None."""
    state = status["nodes"].get(node)
    last = state["last_nack"] if state else None
    return last if last is not None and last["version"] == version else None


class PushRejectedError(RuntimeError):
    """The server refused a snapshot (HTTP 400); the message is its reason."""


class ServerAPI:
    """The HTTP API of a running xDS test server at base_url (`http://host:port`, no trailing slash)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            if err.code == 400:
                raise PushRejectedError(json.loads(err.read())["error"]) from None
            raise

    def push(self, node: str, snapshot: Snapshot, *, validate: bool = True) -> None:
        """Serve snapshot to node ("*": every node without its own); PushRejectedError if the server refuses.

        validate=False skips the server's proto validation and consistency check, for tests that need
        Envoy to receive something broken."""
        query = "" if validate else "?validate=false"
        self._request("PUT", f"/snapshots/{node}{query}", json.dumps(snapshot.document()).encode())

    def status(self) -> Status:
        return cast(Status, self._request("GET", "/status"))

    def wait_acked(self, node: str, version: str, *, timeout: float = 30.0) -> Status:
        """Wait until every open stream of node ACKed version; the status that showed it."""
        status = self._wait(lambda st: acked(st, node, version), timeout)
        if not acked(status, node, version):
            raise TimeoutError(f"node {node} did not ACK version {version} in {timeout} s: {status}")
        return status

    def wait_nacked(self, node: str, version: str, *, timeout: float = 30.0) -> NackRecord:
        """Wait until node NACKed version; the NACK (type, error detail)."""
        status = self._wait(lambda st: nack_of(st, node, version) is not None, timeout)
        found = nack_of(status, node, version)
        if found is None:
            raise TimeoutError(f"node {node} did not NACK version {version} in {timeout} s: {status}")
        return found

    def wait_streams(self, node: str, count: int, *, timeout: float = 30.0) -> Status:
        """Wait until node has exactly count open ADS streams."""
        status = self._wait(lambda st: len(node_streams(st, node)) == count, timeout)
        if len(node_streams(status, node)) != count:
            raise TimeoutError(f"node {node} does not have {count} streams after {timeout} s: {status}")
        return status

    def _wait(self, done: Callable[[Status], bool], timeout: float) -> Status:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if done(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


class ControlPlane(ServerAPI):
    """One xDS test server process on this host and its HTTP API; the same addresses across stop() and
    start().

    binary defaults to ensure_binary(), which builds the server on a cache miss (minutes when cold)."""

    def __init__(
        self,
        workdir: Path,
        *,
        ads_host: str = "127.0.0.1",
        unix_socket: Path | None = None,
        binary: Path | None = None,
    ) -> None:
        super().__init__("http://127.0.0.1:0")
        self.workdir = workdir
        self.ads_host = ads_host
        self.unix_socket = unix_socket
        self.binary = binary or ensure_binary()
        self.log_path = workdir / "xds-server.log"
        self.ads_port = 0
        self.http_port = 0
        self.starts = 0
        self._ready = workdir / "xds-server.ready.json"
        self._saved = workdir / "xds-server.snapshots.json"
        self._pushed: dict[str, dict[str, Any]] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # Process ------------------------------------------------------------------------------------------

    def argv(self, *, keep_snapshots: bool) -> list[str]:
        argv = [
            str(self.binary),
            f"-ads-listen={self.ads_host}:{self.ads_port}",
            f"-http-listen=127.0.0.1:{self.http_port}",
            f"-ready-file={self._ready}",
        ]
        if self.unix_socket is not None:
            argv.append(f"-ads-unix={self.unix_socket}")
        if keep_snapshots and self._pushed:
            argv.append(f"-snapshots={self._saved}")
        return argv

    def start(self, *, keep_snapshots: bool = False) -> ControlPlane:
        """Start the server (same ports as before after a stop); keep_snapshots serves the last
        accepted snapshot of every node from the first request, as a control plane with a store would."""
        if self.running():
            raise RuntimeError("the xDS server is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._ready.unlink(missing_ok=True)
        if keep_snapshots:
            self._saved.write_text(json.dumps(self._pushed))
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self.starts} at {time.time():.3f}\n".encode())
            self._proc = subprocess.Popen(
                self.argv(keep_snapshots=keep_snapshots),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        ready = self._wait_ready()
        self.ads_port = int(ready["ads"].rsplit(":", 1)[1])
        self.http_port = int(ready["http"].rsplit(":", 1)[1])
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        if not keep_snapshots:
            self._pushed.clear()
        return self

    def _wait_ready(self) -> dict[str, str]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.exists():
            if not self.running():
                raise RuntimeError(f"the xDS server exited at start:\n{self.logs()[-4000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the xDS server did not listen in {READY_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return cast(dict[str, str], json.loads(self._ready.read_text()))

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM (every ADS stream closes); the exit status."""
        if self._proc is None:
            raise RuntimeError("the xDS server never started")
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: a crash rather than a shutdown."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def restart(self, *, keep_snapshots: bool = True) -> ControlPlane:
        self.stop()
        return self.start(keep_snapshots=keep_snapshots)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.kill()

    def push(self, node: str, snapshot: Snapshot, *, validate: bool = True) -> None:
        """ServerAPI.push, remembering validated snapshots for start(keep_snapshots=True)."""
        super().push(node, snapshot, validate=validate)
        if validate:
            self._pushed[node] = snapshot.document()
