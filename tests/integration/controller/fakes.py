"""Stand-ins for what these tests are NOT about: the kubelet and the agents inside the pod.

The API server is real. The kubelet is simulated by writing pod status through the real status
subresource (new containerID when a spec image changes, ErrImagePull for images marked broken), and
the agents by a small HTTP server per pod on its own loopback address, answering `/status` on the
contract's ports like the real agent would during a hand-over. Real kubelet and real agents are
exercised by the e2e suite on the local cluster.
"""

import itertools
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from clusterkit import kube
from controller.kube import Kube
from webhook.contract import STATUS_PORT_A, STATUS_PORT_B
from webhook.injection_status import InjectionStatus

EMPTY = "registry.local/hotupgrade-empty:test"
OLD = "registry.local/hotupgrade-sidecar:1"
NEW = "registry.local/hotupgrade-sidecar:2"
BROKEN = "registry.local/hotupgrade-sidecar:broken"
PAIR = ("hotupgrade-a", "hotupgrade-b")
SLOT_OF = {"hotupgrade-a": "a", "hotupgrade-b": "b"}
_ips = itertools.count(2)


def fresh_loopback_ip() -> str:
    """A loopback address of its own per simulated pod (all of 127/8 is local on Linux)."""
    n = next(_ips) + secrets.randbelow(200) * 250
    return f"127.{77 + n // 65000 % 100}.{n // 250 % 250 + 1}.{n % 250 + 2}"


def status_annotation() -> InjectionStatus:
    return InjectionStatus(
        active="hotupgrade-a",
        standby="hotupgrade-b",
        slots=dict(SLOT_OF),
        sidecar_image=OLD,
        empty_image=EMPTY,
        config_hash="test",
    )


# What Pod Security `restricted` asks of every container (and the pod's seccomp profile).
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 1337,
    "runAsGroup": 1337,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_manifest(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    parent_shutdown: int = 1,
    node_name: str | None = None,
    restricted: bool = False,
    native: bool = False,
    service_account: str | None = None,
    pull_secrets: tuple[str, ...] = (),
) -> dict[str, Any]:
    """An injected pod as the webhook would leave it; unschedulable, so no real kubelet touches it.
    With `node_name` it is bound to that node (one with no kubelet: there is no such node);
    `restricted` makes it pass Pod Security `restricted`; `native` puts the pair among the init
    containers with restartPolicy Always (nativeSidecar mode)."""
    env = [{"name": "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS", "value": str(parent_shutdown)}]
    pair = [
        {"name": "hotupgrade-a", "image": OLD, "env": env},
        {"name": "hotupgrade-b", "image": EMPTY, "env": env},
    ]
    app = {"name": "app", "image": "registry.local/demo-app:1"}
    spec: dict[str, Any] = {
        "nodeSelector": {"hotupgrade.io/test-no-such-node": "true"},
        "terminationGracePeriodSeconds": 0,
    }
    if native:
        spec["initContainers"] = [{**c, "restartPolicy": "Always"} for c in pair]
        spec["containers"] = [app]
    else:
        spec["containers"] = [*pair, app]
    if restricted:
        spec["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
        for container in spec["containers"] + spec.get("initContainers", []):
            container["securityContext"] = dict(RESTRICTED_CONTAINER)
    if service_account is not None:
        spec["serviceAccountName"] = service_account
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    if node_name is not None:
        spec["nodeName"] = node_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels or {"app": "web"},
            "annotations": {"hotupgrade.io/status": status_annotation().render()},
        },
        "spec": spec,
    }


class FakeAgents:
    """Both slots' `/status` for one pod: active/serving, hand-over on start, drain, retire."""

    def __init__(self, ip: str, *, drain_seconds: float = 1.0) -> None:
        self.ip = ip
        self.drain_seconds = drain_seconds
        self.lock = threading.Lock()
        self.active = "a"
        self.epoch = 0
        self.phases = {"a": "serving", "b": "standby"}
        self.running_agent = {"a": True, "b": False}  # the empty image has no agent
        self.drain_until: float | None = None
        self.stall_take_over = False  # the new agent starts but never finishes taking over
        self.servers = [self._serve("a", STATUS_PORT_A), self._serve("b", STATUS_PORT_B)]

    def _serve(self, slot: str, port: int) -> ThreadingHTTPServer:
        agents = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                doc = agents.document(slot)
                body = json.dumps(doc).encode() if doc is not None else b"no agent"
                self.send_response(200 if doc is not None else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((self.ip, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def document(self, slot: str) -> dict[str, Any] | None:
        with self.lock:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.phases[self._other(self.active)] = "retired"
                self.drain_until = None
            if not self.running_agent[slot]:
                return None
            gone = self.phases[slot] in ("draining", "retired")
            role = "active" if slot == self.active else ("retired" if gone else "standby")
            return {
                "slot": slot,
                "role": role,
                "phase": self.phases[slot],
                "epoch": self.epoch if slot == self.active else None,
                "envoy_version": "1.40.0",
                "hot_restart_version": "11.104",
                "last_error": None,
                "state": {
                    "active_slot": self.active,
                    "epoch": self.epoch,
                    "slots": {s: {"phase": p} for s, p in self.phases.items()},
                },
            }

    @staticmethod
    def _other(slot: str) -> str:
        return "b" if slot == "a" else "a"

    def container_started(self, slot: str, image: str) -> None:
        """What the agent in a freshly started container does (the kubelet simulator calls this)."""
        with self.lock:
            if image == EMPTY:
                self.running_agent[slot] = False
                if slot != self.active:
                    self.phases[slot] = "standby"
                return
            self.running_agent[slot] = True
            if slot == self.active:
                return
            if self.stall_take_over:
                self.phases[slot] = "starting"
                return
            old = self.active
            self.active, self.epoch = slot, self.epoch + 1
            self.phases[slot], self.phases[old] = "serving", "draining"
            self.drain_until = time.monotonic() + self.drain_seconds

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


class KubeletSim:
    """Writes pod status the way a kubelet would after spec image changes (real status subresource).

    `tags` maps a digest-pinned image to the tag the kubelet names it by in `status.image` (as it does
    when a tag of that digest is on the node); `ignores_native_image_change` plays a kubelet older than
    1.32, which keeps a native sidecar running on its old image whatever the spec says.
    """

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.agents: dict[str, FakeAgents] = {}
        self.broken = {BROKEN}
        self.generation = itertools.count(1)
        self.tags: dict[str, str] = {}
        self.ignores_native_image_change = False
        self.started_on: dict[tuple[str, str], str] = {}  # (pod, container) -> spec image it runs

    def add_pod(
        self,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        drain_seconds: float = 1.0,
        node_name: str | None = None,
        **manifest: Any,
    ) -> FakeAgents:
        self.kube.create_pod(
            self.namespace, pod_manifest(name, labels=labels, node_name=node_name, **manifest)
        )
        agents = FakeAgents(fresh_loopback_ip(), drain_seconds=drain_seconds)
        self.agents[name] = agents
        self.sync(name)
        return agents

    def sync(self, name: str) -> None:
        pod = self.kube.get_pod(self.namespace, name)
        if pod is None:
            return
        status = pod.get("status") or {}
        init = self._statuses(pod, name, "initContainers", status.get("initContainerStatuses"))
        main = self._statuses(pod, name, "containers", status.get("containerStatuses"))
        agents = self.agents[name]
        ready = all("running" in s["state"] for s in init + main)
        body: dict[str, Any] = {
            "status": {
                "phase": "Running",
                "podIP": agents.ip,
                "podIPs": [{"ip": agents.ip}],
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                "containerStatuses": main,
            }
        }
        if init:
            body["status"]["initContainerStatuses"] = init
        self.kube.core.patch_namespaced_pod_status(
            name, self.namespace, body, _content_type="application/merge-patch+json", _preload_content=False
        )

    def _statuses(
        self, pod: dict[str, Any], name: str, key: str, reported: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        previous = {s["name"]: s for s in reported or []}
        statuses = []
        for container in pod["spec"].get(key) or []:
            cname, image = container["name"], container["image"]
            before = previous.get(cname)
            running_on = self.started_on.get((name, cname))
            native = key == "initContainers" and container.get("restartPolicy") == "Always"
            if before is not None and (running_on == image or (native and self.ignores_native_image_change)):
                statuses.append(before)
                continue
            self.started_on[(name, cname)] = image
            statuses.append(self._started(cname, image, before))
            if cname in SLOT_OF and image not in self.broken:
                self.agents[name].container_started(SLOT_OF[cname], image)
        return statuses

    def _started(self, cname: str, image: str, before: dict[str, Any] | None) -> dict[str, Any]:
        restarts = 0 if before is None else int(before.get("restartCount", 0)) + 1
        if image in self.broken:
            state: dict[str, Any] = {"waiting": {"reason": "ErrImagePull", "message": f"{image}: not found"}}
            return {
                "name": cname,
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": restarts,
            } | {"state": state}
        pinned = "@" in image  # the kubelet's imageID for a pinned image is the repo digest it pulled
        return {
            "name": cname,
            "image": self.tags.get(image, image),
            "imageID": image if pinned else f"{image}@sha256:{abs(hash(image)):064x}"[:80],
            "containerID": f"containerd://{cname}-{next(self.generation)}",
            "ready": True,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": "2026-11-26T12:00:00Z"}},
        }

    def pre_pull_succeeded(self, name: str) -> None:
        """Play the kubelet of a pre-pull pod (bound to a node with none): it pulled and exited 0."""
        self.kube.core.patch_namespaced_pod_status(
            name,
            self.namespace,
            {"status": {"phase": "Succeeded"}},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )

    def sync_all(self) -> None:
        for name in list(self.agents):
            self.sync(name)

    def close(self) -> None:
        for agents in self.agents.values():
            agents.close()


class Background:
    """Run `tick` every `interval` seconds on a thread until closed; remember the first error."""

    def __init__(self, tick: Any, interval: float = 0.2) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

        def loop() -> None:
            while not self.stop.wait(interval):
                try:
                    tick()
                except Exception as exc:  # reported by close(); a conflict now and then is expected
                    if "409" not in str(exc):
                        self.errors.append(exc)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def wait_until(check: Any, *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy; fail (an assertion) with `what` after `timeout` s."""
    try:
        return kube.wait_until(what, check, timeout, interval)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None
