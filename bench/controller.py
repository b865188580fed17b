"""Memory of the upgrade controller per 1,000 watched pods, against a real kube-apiserver, as JSON.

    python -m bench.controller [--kubeconfig FILE] [--pods 1000,2000] [--settle 15]

For each size N, creates N injected pods (unschedulable, so no kubelet runs them) in a fresh namespace,
starts the real `hotupgrade-controller` process scoped to it (leader election on), waits for
its initial list and watch, and reads VmRSS/VmHWM from /proc. N = 0 is the baseline; the figure is
(RSS(N) - RSS(0)) / N * 1000. For scale, the same pods held as client *models* (what an informer cache
built on the client's deserialization would keep) are measured in a separate process.
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from controller.kube import Kube
from webhook.kubeclient import load_api_client

DEFAULT_KUBECONFIG = "/var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig"
CONTROLLER = str(Path(sys.executable).parent / "hotupgrade-controller")
STATUS = json.dumps(
    {
        "version": 1,
        "active": "hotupgrade-a",
        "standby": "hotupgrade-b",
        "slots": {"hotupgrade-a": "a", "hotupgrade-b": "b"},
        "sidecarImage": "registry.local/hotupgrade-sidecar:1",
        "emptyImage": "registry.local/hotupgrade-empty:1",
        "configHash": "bench",
    }
)
MODEL_CACHE = """
import json, resource, sys
from kubernetes import client, config
api = config.new_client_from_config(config_file=sys.argv[1])
before = int(open('/proc/self/statm').read().split()[1]) * 4096
cache = {}
token = None
while True:
    page = client.CoreV1Api(api).list_namespaced_pod(sys.argv[2], limit=500, _continue=token)
    for pod in page.items:
        cache[(pod.metadata.namespace, pod.metadata.name)] = pod
    token = page.metadata._continue
    if not token:
        break
after = int(open('/proc/self/statm').read().split()[1]) * 4096
print(json.dumps({"pods": len(cache), "rss_before": before, "rss_after": after}))
"""


def pod(name: str) -> dict[str, Any]:
    env = [
        {"name": "HOTUPGRADE_SLOT", "value": "a"},
        {"name": "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS", "value": "30"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench"},
            "annotations": {"hotupgrade.io/status": STATUS},
        },
        "spec": {
            "nodeSelector": {"hotupgrade.io/bench-no-such-node": "true"},
            "containers": [
                {"name": "hotupgrade-a", "image": "registry.local/hotupgrade-sidecar:1", "env": env},
                {"name": "hotupgrade-b", "image": "registry.local/hotupgrade-empty:1", "env": env},
                {"name": "app", "image": "registry.local/demo-app:1"},
            ],
        },
    }


def rss_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def measure(kubeconfig: str, kube: Kube, count: int, settle: float) -> dict[str, Any]:
    namespace = f"hu-bench-{secrets.token_hex(3)}"
    core: Any = kube.core
    core.create_namespace({"metadata": {"name": namespace}}, _preload_content=False)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: kube.create_pod(namespace, pod(f"bench-{i:05d}")), range(count)))
        created_s = time.monotonic() - started
        log = Path(f"/tmp/{namespace}.log")
        with log.open("wb") as stream:
            args = ["--kubeconfig", kubeconfig, "--namespace", namespace, "--lease-namespace", namespace]
            args += ["--metrics-port", "0", "--identity", "bench"]
            proc = subprocess.Popen([CONTROLLER, *args], stdout=stream, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 120
                while '"pods_listed"' not in log.read_text(errors="replace"):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"controller did not list pods: {log.read_text()[-2000:]}")
                    time.sleep(0.2)
                time.sleep(settle)
                memory = rss_kib(proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        model = {}
        if count:
            out = subprocess.run(
                [sys.executable, "-c", MODEL_CACHE, kubeconfig, namespace],
                capture_output=True,
                text=True,
                check=True,
            )
            model = json.loads(out.stdout)
        return {"pods": count, "create_seconds": round(created_s, 1), **memory, "model_cache": model}
    finally:
        core.delete_namespace(namespace, _preload_content=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG))
    parser.add_argument("--pods", default="1000", help="comma-separated sizes; 0 is always measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of watching before reading RSS")
    args = parser.parse_args()
    kube = Kube(load_api_client(args.kubeconfig))
    sizes = [0, *[int(s) for s in args.pods.split(",") if int(s) > 0]]
    runs = [measure(args.kubeconfig, kube, n, args.settle) for n in sizes]
    base = runs[0]
    for run in runs[1:]:
        per_k = 1000 / run["pods"]
        run["controller_rss_mib_per_1000_pods"] = round((run["VmRSS"] - base["VmRSS"]) * per_k / 1024, 2)
        run["controller_peak_mib_per_1000_pods"] = round((run["VmHWM"] - base["VmHWM"]) * per_k / 1024, 2)
        model = run["model_cache"]
        run["model_cache_mib_per_1000_pods"] = round(
            (model["rss_after"] - model["rss_before"]) / 1024 / 1024 * per_k, 2
        )
    print(json.dumps({"benchmark": "controller_memory", "baseline": base, "runs": runs[1:]}, indent=2))


if __name__ == "__main__":
    main()
