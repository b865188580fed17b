"""Planning time and memory of the upgrade controller for a fleet of SidecarReleases, as JSON (issue 14).

    python -m bench.controller [--pods 10000] [--releases 20] [--runs 10] [--no-cluster | --no-planning]

Planning: the pure planner (controller.rollout.plan_fleet) over a synthetic fleet built in-process: --pods
pods spread over --namespaces namespaces and --releases releases (one of them a higher-priority canary
release overlapping the others), in a phase mix like a fleet mid-rollout (`PHASE_MIX`). Timed per run:
the whole fleet in one plan, and one resync (every release reconciled once, each with the reconciler's own
`plan`: the pods it selects, planned against all releases); median and p95 over --runs runs.

Memory (unless --no-cluster): for each size N of --pods, N injected pods (unschedulable, so no kubelet runs
them) in a fresh namespace and the same --releases releases selecting them there (the chart's CRD is
applied first); then the real `hotupgrade-controller` process, scoped to the namespace (leader election
on), and its VmRSS/VmHWM from /proc once its caches have listed, every release has had its status written
and --settle seconds of watching have passed. N = 0 is the baseline (same releases); the figure is
(RSS(N) - RSS(0)) / N * 1000. For scale, the same pods held as client *models* (what an informer cache
built on the client's deserialization would keep) are measured in a separate process. The namespace and
the releases are deleted afterwards; the namespace is waited for (--cleanup-timeout).
Figures, with the date and load of each run: docs/sidecarrelease.md, "Figures" (2026-11-30: plan_fleet
979 ms wall / 624 ms CPU at load ~4; controller RSS 141.2 MiB at 10,000 pods, 6.33 MiB per 1,000).
"""

import argparse
import functools
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client import CollectorRegistry

from clusterkit.records import EMPTY, NEW, OLD, STATUS, upgrade_record
from controller.fleetcache import CachedPod, CachedRelease
from controller.kube import Kube
from controller.metrics import ControllerMetrics
from controller.record import Phase, UpgradeRecord
from controller.release import API_VERSION, GROUP, KIND, PLURAL, VERSION, Release, parse_release
from controller.release_reconciler import ReleaseReconciler
from controller.rollout import PodFacts, owning_release, plan_fleet
from localcluster.helm import CHART
from podharness.loadstats import percentile
from webhook.kubeclient import load_api_client

DEFAULT_KUBECONFIG = "/var/lib/sidecar-hotupgrade/cluster/admin.kubeconfig"
CONTROLLER = str(Path(sys.executable).parent / "hotupgrade-controller")
CRDS = CHART / "crds"
OLDER = "registry.local/hotupgrade-sidecar:0"
CANARY = "registry.local/hotupgrade-sidecar:3"
GROUP_LABEL = "bench.hotupgrade.io/group"
TRACK_LABEL = "bench.hotupgrade.io/track"
CANARY_SHARE = 0.05  # pods labelled for the canary release (which overlaps the group releases)
# Where the pods of a fleet mid-rollout stand (shares of pods; the images are their owner's): most run the
# image, a quarter wait, a few are queued or in each in-flight phase, some failed, unready or finishing an
# upgrade to an older image.
PHASE_MIX: tuple[tuple[str, float], ...] = (
    ("updated", 0.55),
    ("waiting", 0.25),
    ("queued", 0.05),
    ("pending", 0.02),
    ("pre_pulling", 0.01),
    ("taking_over", 0.02),
    ("draining", 0.03),
    ("resetting", 0.01),
    ("failed", 0.01),
    ("not_ready", 0.03),
    ("finishing_older", 0.02),
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


# --- the fleet's shape (both halves) -----------------------------------------------------------------


def group_of(index: int, releases: int) -> str:
    """The group label of pod `index`: pods go round-robin over the group releases."""
    return f"g{index % max(1, releases - 1):02d}"


def pod_labels(index: int, releases: int) -> dict[str, str]:
    labels = {"app": "bench", GROUP_LABEL: group_of(index, releases)}
    if index % round(1 / CANARY_SHARE) == 0:
        labels[TRACK_LABEL] = "canary"
    return labels


def release_docs(prefix: str, count: int, namespace_selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`count` SidecarReleases: one canary (priority 10, every pod labelled canary) and count - 1 group
    releases (one group each, strategies varied), all over the namespaces `namespace_selector` selects."""
    docs = []
    for index in range(count):
        if index == 0:
            selector: dict[str, Any] = {"matchLabels": {TRACK_LABEL: "canary"}}
            spec: dict[str, Any] = {"image": CANARY, "priority": 10, "strategy": {"maxUnavailable": 2}}
        else:
            selector = {"matchLabels": {GROUP_LABEL: group_of(index - 1, count)}}
            unavailable: int | str = "10%" if index % 2 else 5
            strategy = {"maxUnavailable": unavailable, "partition": index % 3, "maxFailures": 50}
            spec = {"image": NEW, "strategy": strategy}
        docs.append(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": f"{prefix}-r{index:02d}", "generation": 1},
                "spec": {"namespaceSelector": dict(namespace_selector), "selector": selector, **spec},
            }
        )
    return docs


# --- planning time (pure, in-process) ----------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticFleet:
    releases: list[Release]
    pods: list[PodFacts]
    namespaces: dict[str, dict[str, str]]


def _record(phase: Phase, *, to: str, now: datetime, taken_over: bool = False) -> UpgradeRecord:
    started = now - timedelta(seconds=30)
    finished = started if phase in (Phase.COMPLETED, Phase.FAILED) else None
    return upgrade_record(
        phase=phase,
        to_image=to,
        started=started,
        phase_since=started,
        taken_over=taken_over,
        finished=finished,
    )


def _facts(base: PodFacts, kind: str, image: str, now: datetime) -> PodFacts:
    """`base` (Ready, on OLD, nothing in flight) moved to where `kind` of PHASE_MIX stands toward `image`."""
    in_flight = {
        "pending": Phase.PENDING,
        "pre_pulling": Phase.PRE_PULLING,
        "taking_over": Phase.TAKING_OVER,
        "draining": Phase.DRAINING,
        "resetting": Phase.RESETTING,
    }
    if kind == "updated":
        status = replace(STATUS, sidecar_image=image, active="hotupgrade-b", standby="hotupgrade-a")
        return replace(base, status=status, target=image, record=_record(Phase.COMPLETED, to=image, now=now))
    if kind == "queued":
        return replace(base, target=image, swap_hold=image)  # as a release starts it: swap held
    if kind in in_flight:
        phase = in_flight[kind]
        taken = phase in (Phase.DRAINING, Phase.RESETTING)
        hold = image if phase in (Phase.PENDING, Phase.PRE_PULLING) else None  # not lifted yet
        record = _record(phase, to=image, now=now, taken_over=taken)
        return replace(base, target=image, record=record, swap_hold=hold)
    if kind == "failed":
        return replace(base, target=image, record=_record(Phase.FAILED, to=image, now=now))
    if kind == "not_ready":
        return replace(base, ready=False)
    if kind == "finishing_older":
        return replace(base, target=OLDER, record=_record(Phase.DRAINING, to=OLDER, now=now, taken_over=True))
    return base  # waiting


def synthetic_fleet(*, pods: int, releases: int, namespaces: int, seed: int, now: datetime) -> SyntheticFleet:
    """`pods` pod facts over `namespaces` namespaces (two tiers) and `releases` releases, phases drawn from
    PHASE_MIX with `seed`; each pod's phase is taken toward the image of the release that governs it."""
    ns_labels = {
        f"bench-{i:03d}": {
            "kubernetes.io/metadata.name": f"bench-{i:03d}",
            "tier": ("prod", "staging")[i % 2],
        }
        for i in range(namespaces)
    }
    selector = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod", "staging"]}]}
    parsed = [parse_release(doc) for doc in release_docs("bench", releases, selector)]
    names = sorted(ns_labels)
    rng = random.Random(seed)
    kinds, weights = zip(*PHASE_MIX, strict=True)
    facts = []
    for index in range(pods):
        namespace = names[index % len(names)]
        labels = pod_labels(index, releases)
        base = PodFacts(
            namespace=namespace, name=f"pod-{index:05d}", labels=labels, ready=True, status=STATUS
        )
        owner = owning_release(parsed, labels, ns_labels[namespace])
        kind = rng.choices(kinds, weights)[0]
        facts.append(base if owner is None else _facts(base, kind, owner.spec.image, now))
    return SyntheticFleet(releases=parsed, pods=facts, namespaces=ns_labels)


class StaticFleet:
    """The reconciler's `Fleet` over fixed caches (what FleetCache holds once listed), for timing `plan`."""

    def __init__(self, fleet: SyntheticFleet) -> None:
        self._releases = {r.name: CachedRelease(raw={}, parsed=r) for r in fleet.releases}
        self._pods = {p.key: CachedPod(facts=p, resource_version="1") for p in fleet.pods}
        self._namespaces = fleet.namespaces

    def releases(self) -> Mapping[str, CachedRelease]:
        return self._releases

    def namespaces(self) -> Mapping[str, Mapping[str, str]]:
        return self._namespaces

    def pods(self) -> Mapping[str, CachedPod]:
        return self._pods

    def pod_written(self, raw: dict[str, Any]) -> None:
        raise AssertionError("planning writes nothing")

    def pod_gone(self, namespace: str, name: str) -> None:
        raise AssertionError("planning writes nothing")


def figures(wall: Sequence[float], cpu: Sequence[float]) -> dict[str, float]:
    """Wall milliseconds (median, p95, min, max) and the median CPU milliseconds: the machine may be
    shared, so CPU shows the work and wall what a reconcile waits."""
    return {
        "median_ms": round(statistics.median(wall), 1),
        "p95_ms": round(percentile(wall, 95), 1),
        "min_ms": round(min(wall), 1),
        "max_ms": round(max(wall), 1),
        "cpu_median_ms": round(statistics.median(cpu), 1),
    }


def clocked(run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) milliseconds of one `run()`."""
    started, started_cpu = time.perf_counter(), time.process_time()
    run()
    return (time.perf_counter() - started) * 1000, (time.process_time() - started_cpu) * 1000


def planning(*, pods: int, releases: int, namespaces: int, runs: int, seed: int) -> dict[str, Any]:
    """The planning half of the JSON: the fleet's shape, then per run (after one warm-up) the whole fleet in
    one plan_fleet, one resync (each release's reconcile plan, `ReleaseReconciler.plan`, once) and one sweep
    for held upgrades no release selects (`ReleaseReconciler.orphans`, at most once a minute)."""
    now = datetime(2026, 11, 30, tzinfo=UTC)
    fleet = synthetic_fleet(pods=pods, releases=releases, namespaces=namespaces, seed=seed, now=now)
    reconciler = ReleaseReconciler(
        Kube(client.ApiClient()), StaticFleet(fleet), metrics=ControllerMetrics(CollectorRegistry())
    )
    whole = plan_fleet(fleet.releases, fleet.pods, fleet.namespaces, now=now)
    plans = [functools.partial(reconciler.plan, r, now=now) for r in fleet.releases]
    for plan in plans:  # warm-up
        plan()
    fleet_wall, fleet_cpu, one_wall, one_cpu, sync_wall, sync_cpu = [], [], [], [], [], []
    sweep_wall: list[float] = []
    sweep_cpu: list[float] = []
    for _ in range(runs):
        wall, cpu = clocked(lambda: plan_fleet(fleet.releases, fleet.pods, fleet.namespaces, now=now))
        fleet_wall.append(wall)
        fleet_cpu.append(cpu)
        timings = [clocked(plan) for plan in plans]
        one_wall += [w for w, _ in timings]
        one_cpu += [c for _, c in timings]
        sync_wall.append(sum(w for w, _ in timings))
        sync_cpu.append(sum(c for _, c in timings))
        wall, cpu = clocked(lambda: reconciler.orphans(fleet.releases[0]))
        sweep_wall.append(wall)
        sweep_cpu.append(cpu)
    states = Counter(str(s) for p in whole.releases.values() for s in p.pods.values())
    return {
        "pods": pods,
        "releases": releases,
        "namespaces": namespaces,
        "runs": runs,
        "governed_pods": len(whole.owners),
        "overlapping_pods": sum(o.pods for p in whole.releases.values() for o in p.status.overlaps),
        "pod_states": dict(sorted(states.items())),
        "starts_planned": sum(len(p.starts) for p in whole.releases.values()),
        "plan_fleet_all_pods": figures(fleet_wall, fleet_cpu),
        "reconcile_plan_one_release": figures(one_wall, one_cpu),
        "resync_all_releases": figures(sync_wall, sync_cpu),
        "orphan_sweep": figures(sweep_wall, sweep_cpu),
    }


# --- controller memory (real process, real apiserver) ------------------------------------------------


def pod(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    env = [
        {"name": "HOTUPGRADE_SLOT", "value": "a"},
        {"name": "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS", "value": "30"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "annotations": {"hotupgrade.io/status": STATUS.render()},
        },
        "spec": {
            "nodeSelector": {"hotupgrade.io/bench-no-such-node": "true"},
            "containers": [
                {"name": "hotupgrade-a", "image": OLD, "env": env},
                {"name": "hotupgrade-b", "image": EMPTY, "env": env},
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


def apply_crd(kubeconfig: str) -> None:
    """The chart's CRD, server-side applied (taking over fields helm set) and Established."""
    kubectl = ["kubectl", "--kubeconfig", kubeconfig]
    apply = [*kubectl, "apply", "--server-side", "--force-conflicts", "--field-manager", "hotupgrade-bench"]
    subprocess.run([*apply, "-f", str(CRDS)], check=True, capture_output=True, timeout=60)
    wait = [*kubectl, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s"]
    subprocess.run(wait, check=True, capture_output=True, timeout=90)


def create_releases(kube: Kube, docs: Sequence[Mapping[str, Any]]) -> None:
    for doc in docs:
        body = {**doc, "metadata": {"name": doc["metadata"]["name"]}}
        kube.custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body, _preload_content=False)


def delete_releases(kube: Kube, docs: Sequence[Mapping[str, Any]]) -> None:
    for doc in docs:
        try:
            kube.custom.delete_cluster_custom_object(
                GROUP, VERSION, PLURAL, doc["metadata"]["name"], _preload_content=False
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def log_event(line: str) -> dict[str, Any] | None:
    """One structured log line as its JSON object (None: not one, or still being written)."""
    try:
        found = json.loads(line)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def wait_settled(log: Path, proc: subprocess.Popen[bytes], releases: int, timeout: float) -> float:
    """Seconds until the controller listed its pods and wrote the status of each of `releases` releases."""
    started = time.monotonic()
    while True:
        events = [e for line in log.read_text(errors="replace").splitlines() if (e := log_event(line))]
        listed = any(e.get("event") == "pods_listed" for e in events)
        written = {e.get("release") for e in events if e.get("event") == "release_status"}
        if listed and len(written) >= releases:
            return time.monotonic() - started
        if time.monotonic() - started > timeout or proc.poll() is not None:
            raise RuntimeError(f"controller did not settle: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)


def delete_namespace(kube: Kube, namespace: str, timeout: float) -> float | None:
    """Delete `namespace` and wait until it is gone: seconds taken, None past `timeout`."""
    core: Any = kube.core
    core.delete_namespace(namespace, _preload_content=False)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            core.read_namespace(namespace, _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 404:
                return round(time.monotonic() - started, 1)
            raise
        time.sleep(2)
    return None


def measure(kubeconfig: str, kube: Kube, count: int, *, releases: int, settle: float, model: bool,
            cleanup_timeout: float) -> dict[str, Any]:  # fmt: skip
    namespace = f"hu-bench-{secrets.token_hex(3)}"
    docs = release_docs(namespace, releases, {"matchLabels": {"kubernetes.io/metadata.name": namespace}})
    core: Any = kube.core
    core.create_namespace({"metadata": {"name": namespace}}, _preload_content=False)
    out: dict[str, Any] = {"pods": count, "releases": releases}
    try:
        create_releases(kube, docs)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            made = pool.map(
                lambda i: kube.create_pod(namespace, pod(f"bench-{i:05d}", pod_labels(i, releases))),
                range(count),
            )
            list(made)
        out["create_seconds"] = round(time.monotonic() - started, 1)
        log = Path(f"/tmp/{namespace}.log")
        with log.open("wb") as stream:
            args = ["--kubeconfig", kubeconfig, "--namespace", namespace, "--lease-namespace", namespace]
            args += ["--metrics-port", "0", "--identity", "bench", "--releases"]
            proc = subprocess.Popen([CONTROLLER, *args], stdout=stream, stderr=subprocess.STDOUT)
            try:
                out["statuses_written_s"] = round(wait_settled(log, proc, releases, timeout=300), 1)
                time.sleep(settle)
                out.update(rss_kib(proc.pid))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        if count and model:
            done = subprocess.run(
                [sys.executable, "-c", MODEL_CACHE, kubeconfig, namespace],
                capture_output=True,
                text=True,
                check=True,
            )
            out["model_cache"] = json.loads(done.stdout)
        return out
    finally:
        delete_releases(kube, docs)
        out["cleanup_seconds"] = delete_namespace(kube, namespace, cleanup_timeout)


def memory(args: argparse.Namespace, sizes: Sequence[int]) -> dict[str, Any]:
    """The memory half of the JSON: baseline (0 pods) and each size, per 1,000 pods over the baseline."""
    apply_crd(args.kubeconfig)
    kube = Kube(load_api_client(args.kubeconfig))
    runs = [
        measure(
            args.kubeconfig,
            kube,
            n,
            releases=args.releases,
            settle=args.settle,
            model=args.model_cache,
            cleanup_timeout=args.cleanup_timeout,
        )
        for n in [0, *sizes]
    ]
    base = runs[0]
    for run in runs[1:]:
        per_k = 1000 / run["pods"]
        run["controller_rss_mib"] = round(run["VmRSS"] / 1024, 1)
        run["controller_rss_mib_per_1000_pods"] = round((run["VmRSS"] - base["VmRSS"]) * per_k / 1024, 2)
        run["controller_peak_mib_per_1000_pods"] = round((run["VmHWM"] - base["VmHWM"]) * per_k / 1024, 2)
        model = run.get("model_cache")
        if model:
            run["model_cache_mib_per_1000_pods"] = round(
                (model["rss_after"] - model["rss_before"]) / 1024 / 1024 * per_k, 2
            )
    return {"baseline": base, "runs": runs[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG", DEFAULT_KUBECONFIG))
    parser.add_argument("--pods", default="10000", help="comma-separated sizes; 0 is always measured")
    parser.add_argument("--releases", type=int, default=20, help="SidecarReleases over the pods (>= 2)")
    parser.add_argument("--namespaces", type=int, default=50, help="namespaces of the planning fleet")
    parser.add_argument("--runs", type=int, default=10, help="timed planning runs")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of watching before reading RSS")
    parser.add_argument(
        "--cleanup-timeout", type=float, default=600.0, help="seconds to wait for the namespace"
    )
    parser.add_argument("--model-cache", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-cluster: planning only")  # fmt: skip
    parser.add_argument("--planning", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-planning: memory only (a short hold of the cluster)")  # fmt: skip
    args = parser.parse_args()
    if args.releases < 2:
        parser.error("--releases must be at least 2 (a canary and a group release)")
    sizes = [int(s) for s in args.pods.split(",") if int(s) > 0]
    report: dict[str, Any] = {"benchmark": "controller"}
    if args.planning:
        report["planning"] = planning(
            pods=max(sizes),
            releases=args.releases,
            namespaces=args.namespaces,
            runs=args.runs,
            seed=args.seed,
        )
        print(json.dumps(report, indent=2), file=sys.stderr)  # the planning half, before the long part
    if args.cluster:
        report["memory"] = memory(args, sizes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
