"""Rollout speed under load on the local cluster, as JSON (issue 14, "Rollout speed"): a Deployment's
pods moved to a new sidecar image by a SidecarRelease, then `kubectl rollout restart` of the same
Deployment, each under the e2e suite's load generator through the Deployment's ClusterIP Service.

    KUBECONFIG=/var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig \
        python -m bench.rolloutspeed [--replicas 4] [--max-unavailable 1]

Installs the chart as the e2e suite does (its images, drains and controller settings; its own release
`hu-bench-speed`, whose controller watches only the bench namespace), deploys the demo app with
--replicas replicas behind a ClusterIP Service, and measures, for each way:
- wall_s: the release's creation until its status is Complete and every pod is Ready on the target
  (release); `kubectl rollout restart` until `kubectl rollout status` returns, and until only the new
  pods are left (restart);
- the load (HTTP/1.1 keep-alive, HTTP/2, long-lived TCP; no retries, podharness/load.py) from the start
  of the rollout until --settle seconds after its end: requests, failed, TCP echoes and failures;
- NotReady seconds per pod (a watch: what the Service sees) and, for the release, the most pods at risk
  at once as the planner counts them (controller.rollout.at_risk), the most upgrades in flight at once
  (more than maxUnavailable: drains overlapped the next pod) and seconds spent per upgrade phase.
The chart release and the namespace are removed afterwards; the cluster must be under the e2e lock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from controller.record import IN_FLIGHT, Phase
from controller.release import API_VERSION, GROUP, KIND, PLURAL, VERSION
from controller.rollout import at_risk, pod_facts
from e2e import conftest, kube, release, upgrade
from e2e.test_pull_window import answers, service_manifest
from e2e.test_upgrade import start_load_to
from podharness.load import LoadGenerator
from webhook import contract

APP = "speed"
BENCH_RELEASE = release.Release("hu-bench-speed", "hotupgrade-bench-speed")
TARGET = conftest.SIDECAR_IMAGES[1]
LOAD_FIGURES = (
    "requests",
    "failed",
    "http1_connection_close",
    "http2_goaway",
    "p99_ms",
    "tcp_echoes",
    "tcp_failed",
)


class PhaseSampler:
    """Polls the Deployment's pods every `interval` s: pods at risk (the planner's count), upgrades in
    flight, and seconds each pod spent per upgrade phase toward `target`."""

    def __init__(self, api: client.ApiClient, namespace: str, target: str, interval: float = 0.2) -> None:
        self.api, self.namespace, self.target, self.interval = api, namespace, target, interval
        self.max_at_risk = 0
        self.max_in_flight = 0
        self.phase_s: dict[str, defaultdict[str, float]] = {}
        self.samples = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PhaseSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                pods = kube.list_pods(self.api, self.namespace, f"app={APP}")
            except Exception:  # an API hiccup is no measurement; counted so a broken sampler shows
                self.errors += 1
                self._stop.wait(self.interval)
                continue
            now = time.monotonic()
            facts = [pod_facts(p) for p in pods]
            self.max_at_risk = max(self.max_at_risk, sum(at_risk(f) for f in facts))
            flying = [f for f in facts if f.record is not None and f.record.phase in IN_FLIGHT]
            self.max_in_flight = max(self.max_in_flight, len(flying))
            for f in facts:
                if f.record is not None and f.record.to_image == self.target and f.record.phase in IN_FLIGHT:
                    self.phase_s.setdefault(f.name, defaultdict(float))[str(f.record.phase)] += now - last
            last = now
            self.samples += 1
            self._stop.wait(self.interval)

    def phases(self) -> dict[str, dict[str, float]]:
        return {n: {p: round(s, 1) for p, s in c.items()} for n, c in sorted(self.phase_s.items())}


def load_figures(load: LoadGenerator) -> dict[str, Any]:
    summary: dict[str, Any] = dict(load.stop())
    figures = {k: summary[k] for k in LOAD_FIGURES}
    figures["failures_sample"] = [str(f)[:200] for f in summary["failures"][:5]]
    return figures


def release_doc(name: str, namespace: str, max_unavailable: int) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "selector": {"matchLabels": {"app": APP}},
            "image": TARGET,
            "strategy": {"maxUnavailable": max_unavailable},
        },
    }


def rolled_out(api: client.ApiClient, namespace: str, name: str, replicas: int) -> bool:
    """The release says Complete for its generation, and `replicas` pods are Ready, upgraded to TARGET."""
    custom: Any = client.CustomObjectsApi(api)
    raw: dict[str, Any] = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    status = raw.get("status") or {}
    complete = any(c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions") or [])
    if not complete or status.get("observedGeneration") != raw["metadata"]["generation"]:
        return False
    pods = kube.list_pods(api, namespace, f"app={APP}")
    records = [upgrade.upgrade_record(p) for p in pods]
    done = [r for r in records if r is not None and r.phase is Phase.COMPLETED and r.to_image == TARGET]
    return len(pods) == replicas == len(done) and all(kube.condition(p, "Ready") for p in pods)


def by_release(api: client.ApiClient, namespace: str, host: str, *, replicas: int, max_unavailable: int,
               settle: float) -> dict[str, Any]:  # fmt: skip
    name = f"{namespace}-speed"
    custom = client.CustomObjectsApi(api)
    load = start_load_to(host)
    try:
        with (
            upgrade.ReadinessWatch(api, namespace, label_selector=f"app={APP}") as ready,
            PhaseSampler(api, namespace, TARGET) as sampler,
        ):
            started = time.monotonic()
            custom.create_cluster_custom_object(
                GROUP, VERSION, PLURAL, release_doc(name, namespace, max_unavailable)
            )
            kube.wait_until(
                "the release rolled out", lambda: rolled_out(api, namespace, name, replicas), 900, 0.2
            )
            wall = time.monotonic() - started
            time.sleep(settle)
    finally:
        figures = load_figures(load)
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    pods = kube.list_pods(api, namespace, f"app={APP}")
    upgrade_s = {}
    for pod in pods:
        record = upgrade.upgrade_record(pod)
        if record is not None and record.finished is not None:
            upgrade_s[pod["metadata"]["name"]] = round((record.finished - record.started).total_seconds(), 1)
    return {
        "way": "SidecarRelease",
        "max_unavailable": max_unavailable,
        "wall_s": round(wall, 1),
        "load": figures,
        "not_ready_s": dict(sorted(ready.not_ready_s().items())),
        "max_at_risk": sampler.max_at_risk,
        "max_in_flight": sampler.max_in_flight,
        "phase_s": sampler.phases(),
        "upgrade_s": dict(sorted(upgrade_s.items())),
        "sampler": {"samples": sampler.samples, "errors": sampler.errors},
    }


def kubectl(*args: str, timeout: float = 60.0) -> None:
    subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True, timeout=timeout)


def by_restart(
    api: client.ApiClient, namespace: str, host: str, *, replicas: int, settle: float
) -> dict[str, Any]:
    before = {p["metadata"]["name"] for p in kube.list_pods(api, namespace, f"app={APP}")}

    def only_new() -> bool:
        pods = kube.list_pods(api, namespace, f"app={APP}")
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == replicas and not names & before and all(kube.condition(p, "Ready") for p in pods)

    load = start_load_to(host)
    try:
        with upgrade.ReadinessWatch(api, namespace, label_selector=f"app={APP}") as ready:
            started = time.monotonic()
            kubectl("rollout", "restart", f"deployment/{APP}", "-n", namespace)
            kubectl("rollout", "status", f"deployment/{APP}", "-n", namespace, "--timeout=600s", timeout=660)
            status_s = time.monotonic() - started
            kube.wait_until("only the new pods", only_new, 300, 0.2)
            gone_s = time.monotonic() - started
            time.sleep(settle)
    finally:
        figures = load_figures(load)
    return {
        "way": "kubectl rollout restart",
        "wall_s": round(status_s, 1),
        "old_pods_gone_s": round(gone_s, 1),
        "load": figures,
        "not_ready_s": dict(sorted(ready.not_ready_s().items())),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    api = kube.api_client()
    namespace = f"{BENCH_RELEASE.name}-{time.strftime('%H%M%S')}"
    values = conftest.chart_values(BENCH_RELEASE, watch_namespaces=(namespace,))
    values["webhook"] = {"replicas": 1}
    values["controller"]["replicas"] = 1
    with tempfile.TemporaryDirectory(prefix="hotupgrade-bench-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        with conftest.fresh_release(api, BENCH_RELEASE, values_file):
            labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
            with conftest.scoped_namespace(api, BENCH_RELEASE, labels, name=namespace):
                conftest.deploy_and_wait(api, namespace, APP, replicas=args.replicas)
                service = kube.core(api).create_namespaced_service(namespace, service_manifest(APP))
                host = service.spec.cluster_ip
                kube.wait_until(f"Service {APP} answers", lambda: answers(host), 60, 1.0)
                common = {"replicas": args.replicas, "settle": args.settle}
                first = by_release(api, namespace, host, max_unavailable=args.max_unavailable, **common)
                print(json.dumps(first), file=sys.stderr)
                second = by_restart(api, namespace, host, **common)
    return {
        "benchmark": "rollout_speed",
        "pods": args.replicas,
        "target": TARGET,
        "drain_seconds": conftest.DRAIN_SECONDS,
        "parent_shutdown_seconds": conftest.PARENT_SHUTDOWN_SECONDS,
        "release": first,
        "restart": second,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--max-unavailable", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load after each rollout ends")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
