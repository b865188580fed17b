"""The injected pod, driven the way kubelet and the upgrade controller drive it.

An app container (upstream HTTP + echo server) and the sidecar pair `a`/`b`. A slot runs either the
sidecar image (`hotupgrade-agent run` as PID 1, postStart `hotupgrade-agent wait`) or the empty image
(a shell that idles and exits at once on SIGTERM; the shared postStart hook passes because
hotupgrade-agent is not on its PATH). Every command and env name comes from docs/contract.md.

An upgrade to slot X follows the controller's steps (controller/steps.py, whose phase names and limits
it uses; it cannot call the step function, having no API server): TakingOver, the kubelet restarts X
with the sidecar image and runs its postStart hook; Draining, once the hook passes, wait for the old
slot to be `retired` (its Envoy exited); Resetting, the old slot goes back to the empty image (SIGTERM
to the old agent, then the empty container starts).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import envoy

from agent import contract
from controller.policy import Policy
from controller.record import Phase
from podharness.clientstats import Takeover
from podharness.pod import CONTAINER_PATH, Container, Pod, descendants, rss_bytes

UPSTREAM_PORT = 8000
TCP_UPSTREAM_PORT = 8001
# The app's gRPC server, inside the pod only: Envoy reaches it through UPSTREAM_PORT (HTTP/2 is passed on).
GRPC_BACKEND_PORT = 8002
VENV_BIN = Path(sys.executable).parent
EMPTY_ENTRYPOINT = ("/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done")
HARNESS_TEMPLATE = Path(__file__).resolve().parent / "envoy.yaml.tmpl"
# The controller's limits with its defaults: the drain may last parent-shutdown time + drain_grace.
CONTROLLER_POLICY = Policy()


@dataclass(frozen=True)
class SidecarImage:
    """A stand-in for a sidecar image: a bin dir on PATH (hotupgrade-agent, envoy) and baked-in env."""

    name: str
    bin_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def path(self) -> str:
        return f"{self.bin_dir}:{CONTAINER_PATH}"


def make_image(
    root: Path,
    name: str,
    *,
    hot_restart_version: str | None = None,
    env: Mapping[str, str] | None = None,
) -> SidecarImage:
    """Lay out an image's bin dir under root: the agent and the real Envoy binary, or a wrapper around
    it that reports another --hot-restart-version (an image whose Envoy cannot hot-restart with ours)."""
    bin_dir = root / "images" / name.replace(":", "_") / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / contract.AGENT_BINARY).symlink_to(VENV_BIN / contract.AGENT_BINARY)
    real_envoy = str(envoy.get_envoy_path())
    if hot_restart_version is None:
        (bin_dir / "envoy").symlink_to(real_envoy)
    else:
        wrapper = bin_dir / "envoy"
        wrapper.write_text(
            "#!/bin/sh\n"
            'for arg; do [ "$arg" = --hot-restart-version ] && '
            f"{{ echo {hot_restart_version}; exit 0; }}; done\n"
            f'exec {real_envoy} "$@"\n'
        )
        wrapper.chmod(0o755)
    return SidecarImage(name=name, bin_dir=bin_dir, env=dict(env or {}))


@dataclass(frozen=True)
class Timings:
    """Wall-clock times of one upgrade, as the harness observed them."""

    to_slot: str
    started: float
    live: float
    retired: float
    old_stopped: float
    state_serving_since: float | None
    state_retired_since: float | None

    @property
    def takeover_s(self) -> float:
        """Container start -> postStart hook returned 0 (new Envoy LIVE and owning the listeners)."""
        return self.live - self.started

    def drain_s(self) -> float:
        """New Envoy serving -> old Envoy exited; from the agents' own timestamps when they have them."""
        if self.state_serving_since is not None and self.state_retired_since is not None:
            return self.state_retired_since - self.state_serving_since
        return self.retired - self.live

    def takeover(self) -> Takeover:
        """The upgrade as the clients' figures see it: began, new Envoy serving, old Envoy gone."""
        serving = self.state_serving_since if self.state_serving_since is not None else self.live
        exited = self.state_retired_since if self.state_retired_since is not None else self.retired
        return Takeover(began=self.started, serving=serving, parent_exited=exited)


def _is_envoy(pid: int) -> bool:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "envoy"
    except OSError:
        return False


class UpgradeError(AssertionError):
    """A step of the upgrade choreography failed or did not happen in time; the message starts with
    the controller's name of the phase it failed in."""


class SidecarPod:
    """A Pod with an app container and the sidecar pair, plus kubelet-like operations on the pair."""

    def __init__(
        self,
        pod: Pod,
        *,
        drain_seconds: int,
        parent_shutdown_seconds: int,
        wait_timeout: int = 60,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.pod = pod
        self.drain_seconds = drain_seconds
        self.parent_shutdown_seconds = parent_shutdown_seconds
        self.wait_timeout = wait_timeout
        self.extra_env = dict(extra_env or {})
        self.images: dict[str, SidecarImage | None] = {"a": None, "b": None}
        self.timings: list[Timings] = []
        self.rss_peak: dict[str, int] = {}
        self.default_image = make_image(pod.base, "sidecar:good")

    # Environment, as the webhook injects it --------------------------------------------------------

    def env(self, slot: str) -> dict[str, str]:
        status_port = contract.STATUS_PORT_A if slot == "a" else contract.STATUS_PORT_B
        return {
            contract.ENV_SLOT: slot,
            contract.ENV_RUN_DIR: contract.RUN_DIR,
            contract.ENV_POD_NAME: self.pod.label,
            contract.ENV_POD_NAMESPACE: "harness",
            contract.ENV_POD_IP: self.pod.ip,
            contract.ENV_STATUS_PORT: str(status_port),
            contract.ENV_ADMIN_PORT: str(contract.ADMIN_PORT),
            contract.ENV_BASE_ID: str(contract.BASE_ID),
            contract.ENV_DRAIN_SECONDS: str(self.drain_seconds),
            contract.ENV_PARENT_SHUTDOWN_SECONDS: str(self.parent_shutdown_seconds),
            contract.ENV_UPSTREAM_PORT: str(UPSTREAM_PORT),
            contract.ENV_TCP_UPSTREAM_PORT: str(TCP_UPSTREAM_PORT),
            contract.ENV_WAIT_TIMEOUT: str(self.wait_timeout),
            **self.extra_env,
        }

    def status_port(self, slot: str) -> int:
        return contract.STATUS_PORT_A if slot == "a" else contract.STATUS_PORT_B

    # Containers --------------------------------------------------------------------------------------

    def container(self, slot: str) -> Container:
        return self.pod.container(slot)

    def start_app(self) -> None:
        """The app: an HTTP container (HTTP/1.1, WebSocket, and gRPC passed on to the gRPC container) and a
        TCP echo container, like a pod with three app containers."""
        upstream = [sys.executable, "-m", "podharness.upstream"]
        self.pod.container("grpc").start(
            [sys.executable, "-m", "podharness.backends", "--grpc-port", str(GRPC_BACKEND_PORT)], {}
        )
        http = ["--http-port", str(UPSTREAM_PORT), "--grpc-port", str(GRPC_BACKEND_PORT)]
        self.pod.container("app").start([*upstream, *http], {})
        self.pod.container("echo").start([*upstream, "--echo-port", str(TCP_UPSTREAM_PORT)], {})
        self.pod.wait_port(UPSTREAM_PORT, timeout=30)
        self.pod.wait_port(TCP_UPSTREAM_PORT, timeout=30)
        self.pod.wait_port(GRPC_BACKEND_PORT, timeout=30)

    def start_sidecar(self, slot: str, image: SidecarImage | None = None) -> float:
        """Start the sidecar image in slot (entrypoint `hotupgrade-agent run`); the start time."""
        image = image or self.default_image
        env = {**self.env(slot), **image.env, "PATH": image.path()}
        started = time.time()
        self.container(slot).start([contract.AGENT_BINARY, "run"], env)
        self.images[slot] = image
        return started

    def start_empty(self, slot: str) -> None:
        """The empty image; returns once it handles SIGTERM (a real one does from its first instruction)."""
        self.images[slot] = None
        self.container(slot).start(list(EMPTY_ENTRYPOINT), self.env(slot))
        self.container(slot).wait_catching(signal.SIGTERM, timeout=10)

    def post_start(self, slot: str, timeout: float | None = None) -> tuple[int, str]:
        """Run the pair's postStart hook in slot's container, exactly as docs/contract.md spells it."""
        image = self.images[slot]
        env = self.env(slot)
        if image is not None:
            env = {**env, **image.env, "PATH": image.path()}
        done = self.container(slot).exec(
            list(contract.POST_START_COMMAND), env, timeout=timeout or self.wait_timeout + 30
        )
        return done.returncode, done.stdout + done.stderr

    def stop(self, slot: str, grace: float = 30.0) -> int:
        """Kubelet's container stop: SIGTERM, SIGKILL after the grace period."""
        return self.container(slot).stop(grace)

    # Observations ---------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The shared state file, read from the run dir on the host side."""
        path = self.pod.run_dir / contract.STATE_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return data

    def status(self, slot: str) -> dict[str, Any]:
        data = self.pod.http_json(self.status_port(slot), "/status")
        if not isinstance(data, dict):
            raise TypeError(f"/status of {slot} is not an object: {data!r}")
        return data

    def metrics(self, slot: str) -> str:
        status, body = self.pod.http_get(self.status_port(slot), "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics of {slot}: HTTP {status}")
        return body.decode()

    def envoy_server_info(self) -> dict[str, Any]:
        data = self.pod.http_json(contract.ADMIN_PORT, "/server_info")
        if not isinstance(data, dict):
            raise TypeError("server_info is not an object")
        return data

    def envoy_pids(self, slot: str) -> list[int]:
        """Host PIDs of Envoy processes in slot's container."""
        container = self.container(slot)
        if not container.running():
            return []
        return [pid for pid in descendants(container.pid) if _is_envoy(pid)]

    def sample_agent_rss(self) -> None:
        """Record the peak RSS of each agent process (PID 1 of a sidecar container).

        Only PID 1: a child between fork and exec (Envoy or a version probe) would count the agent twice."""
        for slot in ("a", "b"):
            container = self.container(slot)
            if self.images[slot] is None or not container.running():
                continue
            rss = rss_bytes(container.pid)
            if not rss:
                continue
            key = f"{slot}#{container.starts}"
            self.rss_peak[key] = max(rss, self.rss_peak.get(key, 0))

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Poll predicate until true; the time it became true. Samples agent RSS meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            self.sample_agent_rss()
            try:
                if predicate():
                    return time.time()
            except (OSError, ValueError, KeyError, TypeError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise UpgradeError(f"timed out after {timeout}s waiting for {what}; state={self.state()}")
            time.sleep(0.02)

    def slot_phase(self, slot: str) -> str | None:
        phase = self.state().get("slots", {}).get(slot, {}).get("phase")
        return None if phase is None else str(phase)

    # Choreography ----------------------------------------------------------------------------------------

    def start_pod(self, image: SidecarImage | None = None) -> Timings:
        """Fresh pod: app, slot a with the sidecar image (epoch 0), slot b empty; both hooks pass."""
        self.start_app()
        started = self.start_sidecar("a", image)
        rc, out = self.post_start("a")
        if rc != 0:
            raise UpgradeError(f"postStart of a failed ({rc}): {out}\n{self.container('a').logs()}")
        live = time.time()
        self.start_empty("b")
        rc, out = self.post_start("b")
        if rc != 0:
            raise UpgradeError(f"postStart of the empty b failed ({rc}): {out}")
        self.sample_agent_rss()
        return Timings("a", started, live, live, live, None, None)

    def upgrade(self, to_slot: str, image: SidecarImage | None = None) -> Timings:
        """Upgrade to to_slot as kubelet + controller do; raises UpgradeError if a step fails."""
        old = "b" if to_slot == "a" else "a"
        # TakingOver: the standby gets the target image; the kubelet restarts it and runs postStart.
        if self.container(to_slot).running():
            self.stop(to_slot)
        started = self.start_sidecar(to_slot, image)
        rc, out = self.post_start(to_slot)
        if rc != 0:
            raise UpgradeError(f"{Phase.TAKING_OVER}: postStart of {to_slot} failed ({rc}): {out}")
        if self.slot_phase(to_slot) == "failed":  # the hook passes while the old Envoy serves on
            raise UpgradeError(f"{Phase.TAKING_OVER}: the agent of {to_slot} failed: {out}")
        live = time.time()
        self.sample_agent_rss()
        # Draining: the old container is never touched before its Envoy has exited.
        retired = self.wait_for(
            f"{Phase.DRAINING}: slot {old} retired",
            lambda: self.slot_phase(old) == "retired",
            timeout=self.parent_shutdown_seconds + CONTROLLER_POLICY.drain_grace,
        )
        slots = self.state().get("slots", {})
        serving_since = slots.get(to_slot, {}).get("since")
        retired_since = slots.get(old, {}).get("since")
        # Resetting: the old container goes back to the empty image.
        rc = self.stop(old)
        old_stopped = time.time()
        if rc != 0:
            raise UpgradeError(f"{Phase.RESETTING}: the retired agent in {old} exited {rc} on SIGTERM")
        self.start_empty(old)
        rc, out = self.post_start(old)
        if rc != 0:
            raise UpgradeError(f"{Phase.RESETTING}: postStart of the empty {old} failed ({rc}): {out}")
        timings = Timings(to_slot, started, live, retired, old_stopped, serving_since, retired_since)
        self.timings.append(timings)
        return timings

    def sigterm(self, slot: str) -> None:
        self.container(slot).signal(signal.SIGTERM)

    def logs(self) -> str:
        """Every container's log, for a failing test's report."""
        parts = [f"----- {name} -----\n{c.logs()}" for name, c in self.pod.containers.items()]
        return "\n".join(parts) + f"\n----- state.json -----\n{json.dumps(self.state(), indent=1)}\n"
