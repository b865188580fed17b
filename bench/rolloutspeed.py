"""Rollout speed under load on the local cluster, as JSON (issue 14, "Rollout speed"): one Deployment's
pods moved three ways in turn, each under the e2e suite's load generator through its ClusterIP Service:
(1) a SidecarRelease to the target image at --max-unavailable, (2) back to the previous image one pod
at a time, each upgrade waited for to Completed (drain and reset included) before the next, as fleet
rollouts went before the change, (3) `kubectl rollout restart`.

    KUBECONFIG=/var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig \
        python -m bench.rolloutspeed [--replicas 4] [--max-unavailable 1]

Installs the chart as the e2e suite does (its images, drains and controller settings; its own release
`hu-bench-speed`, whose controller watches only the bench namespace) and deploys the demo app with
--replicas replicas behind a ClusterIP Service. Per way:
- wall_s: (1) the release's creation until its status is Complete and every pod is Ready on the target;
  (2) the first target until the last pod is Completed and Ready; (3) until `kubectl rollout status`
  returns (and old_pods_gone_s: until only the new pods are left);
- load: HTTP/1.1 keep-alive, HTTP/2, long-lived TCP, no retries (podharness/load.py), from the start of
  the rollout until --settle s after its end: requests, failed, TCP echoes and failures;
- sampled every 0.2 s: the fewest Ready pods not terminating (what the Service sends to), the most pods
  at risk as the planner counts them (controller.rollout.at_risk: from the swap until the new Envoy serves),
  the most held before their swap (controller.rollout.held: checking, pre-pulling or waiting at the swap),
  the most upgrades in flight at once (above maxUnavailable: pre-pulls and drains overlapped other pods'
  swaps), seconds per upgrade phase (PrePulling includes the wait at the swap); per pod alive at the
  end, its upgrade's seconds and its NotReady seconds (a watch: what the Service sees).
The chart release and the namespace are removed afterwards; run it under the e2e lock.
Figures, with the date and load of each run: docs/sidecarrelease.md, "Figures" (2026-11-30, load ~6-14:
release 38.1 s and 0 of 5,851 failed, one pod at a time 65.8 s, rollout restart 21.0 s and 22 of 3,586).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from clusterkit import kube, release, suite, upgrade
from clusterkit.suite import answers, service_manifest, start_load_to
from controller.record import IN_FLIGHT, Phase
from controller.release import API_VERSION, GROUP, KIND, PLURAL, VERSION
from controller.rollout import at_risk, held, pod_facts
from podharness.load import LoadGenerator
from webhook import contract

APP = "speed"
BENCH_RELEASE = release.Release("hu-bench-speed", "hotupgrade-bench-speed")
PREVIOUS, TARGET = suite.SIDECAR_IMAGES
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
    """Polls the Deployment's pods every `interval` s: Ready pods not terminating (what the Service sends
    to), pods at risk (the planner's count), upgrades in flight, seconds per upgrade phase toward `target`."""

    def __init__(self, api: client.ApiClient, namespace: str, target: str, interval: float = 0.2) -> None:
        self.api, self.namespace, self.target, self.interval = api, namespace, target, interval
        self.max_at_risk = 0
        self.max_held = 0
        self.max_in_flight = 0
        self.min_ready: int | None = None
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
            ready = sum(f.ready and not f.deleting for f in facts)  # what the Service's endpoints serve
            self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
            self.max_at_risk = max(self.max_at_risk, sum(at_risk(f) for f in facts))
            self.max_held = max(self.max_held, sum(held(f) for f in facts))
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


def measured(api: client.ApiClient, namespace: str, host: str, *, target: str, settle: float,
             rollout: Callable[[], dict[str, float]]) -> dict[str, Any]:  # fmt: skip
    """Run `rollout` (it returns its wall figures) under load through `host` and watched; the load runs
    `settle` s past its end. Adds the load, the sampler's figures and, per pod on `target` at the end, its
    upgrade's seconds and its NotReady seconds (only pods alive at the end: a deleted pod is not NotReady)."""
    load = start_load_to(host)
    try:
        with (
            upgrade.ReadinessWatch(api, namespace, label_selector=f"app={APP}") as ready,
            PhaseSampler(api, namespace, target) as sampler,
        ):
            figures: dict[str, Any] = dict(rollout())
            time.sleep(settle)
    finally:
        figures["load"] = load_figures(load)
    pods = {p["metadata"]["name"]: p for p in kube.list_pods(api, namespace, f"app={APP}")}
    upgrade_s = {}
    for name, pod in sorted(pods.items()):
        record = upgrade.upgrade_record(pod)
        if record is not None and record.to_image == target and record.finished is not None:
            upgrade_s[name] = round((record.finished - record.started).total_seconds(), 1)
    figures |= {
        "min_ready_pods": sampler.min_ready,
        "max_at_risk": sampler.max_at_risk,
        "max_held": sampler.max_held,
        "max_in_flight": sampler.max_in_flight,
        "phase_s": sampler.phases(),
        "upgrade_s": upgrade_s,
        "not_ready_s": {n: s for n, s in sorted(ready.not_ready_s().items()) if n in pods},
        "sampler": {"samples": sampler.samples, "errors": sampler.errors},
    }
    return figures


def by_release(api: client.ApiClient, namespace: str, host: str, *, replicas: int, max_unavailable: int,
               settle: float) -> dict[str, Any]:  # fmt: skip
    """A SidecarRelease to TARGET at `max_unavailable`: its creation until Complete with every pod Ready."""
    name = f"{namespace}-speed"
    custom = client.CustomObjectsApi(api)

    def rollout() -> dict[str, float]:
        started = time.monotonic()
        doc = release_doc(name, namespace, max_unavailable)
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, doc)
        kube.wait_until(
            "the release rolled out", lambda: rolled_out(api, namespace, name, replicas), 900, 0.2
        )
        return {"wall_s": round(time.monotonic() - started, 1)}

    try:
        figures = measured(api, namespace, host, target=TARGET, settle=settle, rollout=rollout)
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return {"way": "SidecarRelease", "max_unavailable": max_unavailable, **figures}


def ready_now(api: client.ApiClient, namespace: str, name: str) -> bool:
    return kube.condition(kube.get_pod(api, namespace, name), "Ready")


def one_by_one(api: client.ApiClient, namespace: str, host: str, *, settle: float) -> dict[str, Any]:
    """The fleet rollout before issue 14's change: each pod's upgrade to PREVIOUS (the per-pod target
    annotation) waited for to Completed and Ready, drain and reset included, before the next starts."""
    names = sorted(p["metadata"]["name"] for p in kube.list_pods(api, namespace, f"app={APP}"))

    def rollout() -> dict[str, float]:
        started = time.monotonic()
        for name in names:
            upgrade.annotate_target(api, namespace, name, PREVIOUS)
            outcome = upgrade.wait_controller_outcome(api, namespace, name, PREVIOUS, suite.UPGRADE_TIMEOUT)
            if outcome.phase is not Phase.COMPLETED:
                raise RuntimeError(f"upgrade of {name} ended {outcome.phase}: {outcome.message}")
            kube.wait_until(
                f"{name} Ready",
                functools.partial(ready_now, api, namespace, name),
                120,
                0.2,
            )
        return {"wall_s": round(time.monotonic() - started, 1)}

    return {
        "way": "one pod at a time (per-pod target, each to Completed)",
        **measured(api, namespace, host, target=PREVIOUS, settle=settle, rollout=rollout),
    }


def kubectl(*args: str, timeout: float = 60.0) -> None:
    subprocess.run(["kubectl", *args], check=True, capture_output=True, text=True, timeout=timeout)


def by_restart(
    api: client.ApiClient, namespace: str, host: str, *, replicas: int, settle: float
) -> dict[str, Any]:
    """`kubectl rollout restart` until `kubectl rollout status` returns (wall_s) and until only the new
    pods are left (old_pods_gone_s)."""
    before = {p["metadata"]["name"] for p in kube.list_pods(api, namespace, f"app={APP}")}

    def only_new() -> bool:
        pods = kube.list_pods(api, namespace, f"app={APP}")
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == replicas and not names & before and all(kube.condition(p, "Ready") for p in pods)

    def rollout() -> dict[str, float]:
        started = time.monotonic()
        kubectl("rollout", "restart", f"deployment/{APP}", "-n", namespace)
        kubectl("rollout", "status", f"deployment/{APP}", "-n", namespace, "--timeout=600s", timeout=660)
        status_s = time.monotonic() - started
        kube.wait_until("only the new pods", only_new, 300, 0.2)
        return {"wall_s": round(status_s, 1), "old_pods_gone_s": round(time.monotonic() - started, 1)}

    return {
        "way": "kubectl rollout restart",
        **measured(api, namespace, host, target=TARGET, settle=settle, rollout=rollout),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    api = kube.api_client()
    namespace = f"{BENCH_RELEASE.name}-{time.strftime('%H%M%S')}"
    values = suite.chart_values(BENCH_RELEASE, watch_namespaces=(namespace,))
    values["webhook"] = {"replicas": 1}
    values["controller"]["replicas"] = 1
    with tempfile.TemporaryDirectory(prefix="hotupgrade-bench-") as tmp:
        values_file = Path(tmp) / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        with suite.fresh_release(api, BENCH_RELEASE, values_file):
            labels = {contract.LABEL_NAMESPACE_INJECTION: "enabled"}
            with suite.scoped_namespace(api, BENCH_RELEASE, labels, name=namespace):
                suite.deploy_and_wait(api, namespace, APP, replicas=args.replicas)
                service = kube.core(api).create_namespaced_service(namespace, service_manifest(APP))
                host = service.spec.cluster_ip
                kube.wait_until(f"Service {APP} answers", lambda: answers(host), 60, 1.0)
                common = {"replicas": args.replicas, "settle": args.settle}
                first = by_release(api, namespace, host, max_unavailable=args.max_unavailable, **common)
                print(json.dumps(first), file=sys.stderr)
                before = one_by_one(api, namespace, host, settle=args.settle)
                print(json.dumps(before), file=sys.stderr)
                restart = by_restart(api, namespace, host, **common)
    return {
        "benchmark": "rollout_speed",
        "pods": args.replicas,
        "target": TARGET,
        "drain_seconds": suite.DRAIN_SECONDS,
        "parent_shutdown_seconds": suite.PARENT_SHUTDOWN_SECONDS,
        "release": first,
        "one_by_one": before,
        "restart": restart,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--max-unavailable", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of load after each rollout ends")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
