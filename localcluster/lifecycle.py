"""Bring the local cluster up (idempotent, recovers from a crash) and tear it down without leftovers."""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from localcluster import build, configs, host, nodeimages, pki, registry
from localcluster import settings as s
from localcluster.imagebuilder import builder

log = logging.getLogger("localcluster")

# Stop order: consumers of the API first, the store last.
COMPONENTS = ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
# `apiserver` mode: a real API server for integration tests (the controller manager creates the
# default ServiceAccounts, without which the ServiceAccount admission plugin rejects every pod).
API_ONLY = ("etcd", "kube-apiserver", "kube-controller-manager")
KUBECONFIGS = {
    "admin": "admin",
    "controller-manager": "controller-manager",
    "scheduler": "scheduler",
    "kube-proxy": "kube-proxy",
    "kubelet": "kubelet-client",
}


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _https_get(path: str) -> tuple[int, bytes]:
    """GET path from the local API server as admin: (status, body); status 0 when unreachable."""
    ctx = ssl.create_default_context(cafile=str(s.PKI_DIR / "ca.crt"))
    try:
        ctx.load_cert_chain(str(s.PKI_DIR / "admin.crt"), str(s.PKI_DIR / "admin.key"))
        with urllib.request.urlopen(s.APISERVER_LOCAL_URL + path, context=ctx, timeout=5) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def _https_ok(path: str) -> bool:
    return _https_get(path)[0] == 200


def node_ready(body: bytes) -> bool:
    """Whether a Node object (JSON) has condition Ready=True."""
    conditions: list[dict[str, str]] = json.loads(body).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _running(name: str) -> bool:
    return host.recorded_pid(name) is not None


def is_healthy(apiserver_only: bool = False) -> bool:
    """All our processes alive, the API server ready and (full mode) the node Ready."""
    names = API_ONLY if apiserver_only else (*COMPONENTS, "containerd")
    if not all(_running(n) for n in names) or not s.ADMIN_KUBECONFIG.exists():
        return False
    if not _https_ok("/readyz"):
        return False
    if apiserver_only:
        return True
    status, body = _https_get(f"/api/v1/nodes/{s.NODE_NAME}")
    return status == 200 and node_ready(body) and configs_current(host.node_ip())


def configs_current(node_ip: str) -> bool:
    """Whether the running components read what this tree renders (a changed config means a restart)."""
    stale = [p for p, text in configs.all_files(node_ip).items() if not p.exists() or p.read_text() != text]
    if stale:
        log.info("event=config-changed files=%s", ",".join(str(p) for p in stale))
    return not stale


def ctr(*args: str) -> list[str]:
    return ["ctr", f"--address={s.CONTAINERD_SOCKET}", "--namespace=k8s.io", *args]


def remove_containers() -> int:
    """Delete every task and container (pods' leftovers) from containerd, keeping the images."""
    for task in host.run(ctr("tasks", "ls", "-q"), check=False, quiet=True).stdout.split():
        host.run(ctr("tasks", "rm", "-f", task), check=False, quiet=True)
    containers = host.run(ctr("containers", "ls", "-q"), check=False, quiet=True).stdout.split()
    for container in containers:
        host.run(ctr("containers", "rm", container), check=False, quiet=True)
    return len(containers)


def down(purge: bool = False) -> None:
    """Stop everything we started and remove every trace of it from the host (safe to run any time).

    containerd's image store (/var/lib/sidecar-hotupgrade/containerd) stays as a cache unless `purge`.
    """
    for name in COMPONENTS:
        host.stop_component(name)
    registry.down()  # its state (certificates, htpasswd, storage, hosts.toml) lives in CLUSTER_DIR
    host.kill_pod_processes()
    if _running("containerd"):
        remove_containers()
    host.stop_component("containerd")
    host.kill_pod_processes()
    host.unmount_all()
    host.delete_bridge()
    proxy = s.K8S_BIN_DIR / "kube-proxy"
    if proxy.exists():
        host.run([str(proxy), "--cleanup"], check=False, quiet=True)
    host.scrub_iptables()
    host.restore_sysctls()
    shutil.rmtree(s.CLUSTER_DIR, ignore_errors=True)
    shutil.rmtree(s.RUN_DIR, ignore_errors=True)
    if purge:
        shutil.rmtree(s.CONTAINERD_ROOT, ignore_errors=True)
    log.info("event=down purge=%s", purge)


def prepare_files(node_ip: str) -> None:
    """PKI, kubeconfigs and component configs for a fresh cluster."""
    for d in (
        s.CLUSTER_DIR,
        s.LOG_DIR,
        s.PID_DIR,
        s.CNI_CONF_DIR,
        s.CNI_IPAM_DIR,
        s.KUBELET_ROOT,
        s.ETCD_DATA,
    ):
        d.mkdir(parents=True, exist_ok=True)
    s.ETCD_DATA.chmod(0o700)
    pki.write_pki(s.PKI_DIR, s.NODE_NAME, node_ip, s.SERVICE_IP_KUBERNETES)
    ca = (s.PKI_DIR / "ca.crt").read_bytes()
    for conf_name, cert_name in KUBECONFIGS.items():
        text = pki.kubeconfig(
            s.APISERVER_LOCAL_URL,
            ca,
            (s.PKI_DIR / f"{cert_name}.crt").read_bytes(),
            (s.PKI_DIR / f"{cert_name}.key").read_bytes(),
            cert_name,
        )
        path = s.CLUSTER_DIR / f"{conf_name}.kubeconfig"
        path.write_text(text)
        path.chmod(0o600)
    for path, text in configs.all_files(node_ip).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def start_control_plane(node_ip: str) -> None:
    host.start(configs.etcd_component())
    wait_for("etcd", lambda: _http_ok(s.ETCD_CLIENT_URL + "/health"), 60)
    host.start(configs.apiserver_component(node_ip))
    wait_for("kube-apiserver /readyz", lambda: _https_ok("/readyz"), 180, interval=0.5)


def wait_default_service_account() -> None:
    wait_for(
        "default ServiceAccount",
        lambda: _https_ok("/api/v1/namespaces/default/serviceaccounts/default"),
        120,
    )


def start_containerd() -> None:
    host.start(configs.containerd_component())
    wait_for(
        "containerd",
        lambda: host.run(ctr("version"), check=False, quiet=True).returncode == 0,
        60,
    )


def start_node(node_ip: str, archives: list[Path]) -> None:
    """containerd + images (imported, or pushed to the registry the kubelet pulls from), then the
    scheduler, kubelet and kube-proxy; wait until usable."""
    start_containerd()
    if remove_containers():
        # Leftovers of a crash: CRI loaded them at start, so restart it with a clean store.
        host.stop_component("containerd")
        host.kill_pod_processes()
        host.unmount_all()
        start_containerd()
    nodeimages.deliver(node_ip, archives)
    host.start(configs.scheduler_component())
    host.start(configs.kubelet_component(node_ip))
    host.start(configs.kube_proxy_component())
    wait_for("node Ready", is_healthy, 180, interval=1.0)


def up(apiserver_only: bool = False) -> float:
    """Bring the cluster up; a healthy cluster is left alone. Returns the seconds it took."""
    started = time.monotonic()
    if is_healthy(apiserver_only):
        log.info("event=already-up")
        if not apiserver_only:
            # Pods must run what the working tree holds now: rebuild/deliver what changed (fast if nothing).
            refresh_images()
        return time.monotonic() - started
    down()  # Whatever a crash or an earlier run left behind.
    host.ensure_packages(s.APT_PACKAGES)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Images do not need the cluster: build them while binaries build and the control plane starts.
        image_job = None if apiserver_only else pool.submit(builder.ensure_all)
        build.ensure_kubernetes()
        if not apiserver_only:
            registry.ensure_registry()  # a Go build on a cold cache, like Kubernetes just before
        node_ip = host.node_ip()
        prepare_files(node_ip)
        if not apiserver_only:
            host.apply_sysctls(s.HOST_SYSCTLS)
        start_control_plane(node_ip)
        archives = image_job.result() if image_job is not None else []
    host.start(configs.controller_manager_component())
    if not apiserver_only:
        start_node(node_ip, archives)
    wait_default_service_account()
    took = time.monotonic() - started
    log.info("event=up seconds=%.1f kubeconfig=%s", took, s.ADMIN_KUBECONFIG)
    return took


def refresh_images(archives: list[Path] | None = None) -> None:
    """Hand the running node what the working tree builds (import or registry push; fast when unchanged)."""
    nodeimages.deliver(host.node_ip(), builder.ensure_all() if archives is None else archives)


def logs_tail(name: str, lines: int = 40) -> str:
    path: Path = s.LOG_DIR / f"{name}.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
