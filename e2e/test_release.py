"""A SidecarRelease applied with `kubectl apply` rolls a 6-replica injected Deployment on the real cluster
and the in-cluster controller, under load through a ClusterIP Service and to every pod IP (issue 14,
"Proof"): `partition: 3` then `0`; the Deployment scaled to 9 mid-rollout (new pods get the release's
image at creation, from the webhook's release cache); a rollout paused and resumed; the leading
controller killed mid-rollout; a broken image that pauses the release as Degraded after maxFailures, then
rolled back by editing the spec. Throughout: no failed request, pods at risk (the planner's definition)
never above maxUnavailable, NotReady within the README's budget, never two upgrades of one pod at once.

One scenario on one Deployment: each phase starts from where the last one left the fleet, as a user's
would, and the load and the watches span all of them. Figures: one `RELEASE` JSON line (e2e/test_fleet.py
`report`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, release, upgrade
from clusterkit.suite import answers, service_manifest, start_load_to
from controller.record import Phase
from controller.release import GROUP, PLURAL, VERSION
from e2e import conftest, kubectl
from e2e.releasewatch import PodHistory, ReleaseWatch, record_key
from e2e.test_fleet import kill_leader, load_figures, report
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit
from localcluster.helm import CHART
from podharness.load import LoadGenerator

pytestmark = pytest.mark.timeout(2700)

APP = "relfleet"
REPLICAS, SCALED = 6, 9
PARTITION = 3
MAX_UNAVAILABLE = 2
MAX_FAILURES = 2
OLD, NEW = conftest.SIDECAR_IMAGES  # injected by the chart's config; the release's first image
BROKEN = conftest.BROKEN_IMAGE  # its agent cannot start: the take-over fails and is rolled back
PAUSE_HOLD_S = 15.0  # paused, after the in-flight upgrades ended: long enough for several reconciles
HELD_S = 5.0  # after a partition or failure pause is reached: nothing more may start
ROLLOUT_TIMEOUT = 600.0
CRD_FILE = CHART / "crds" / "sidecarreleases.hotupgrade.io.yaml"


def release_manifest(name: str, namespace: str, image: str, **strategy: Any) -> dict[str, Any]:
    """The SidecarRelease the user applies: the Deployment's pods in `namespace`, maxUnavailable 2 and
    maxFailures 2 unless `strategy` says otherwise."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SidecarRelease",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "selector": {"matchLabels": {"app": APP}},
            "image": image,
            "strategy": {
                "maxUnavailable": MAX_UNAVAILABLE,
                "partition": 0,
                "paused": False,
                "maxFailures": MAX_FAILURES,
                **strategy,
            },
        },
    }


def get_release(api: client.ApiClient, name: str) -> dict[str, Any]:
    objects: Any = client.CustomObjectsApi(api)  # typed for model objects; a custom object is a dict
    found: dict[str, Any] = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return found


def condition(sr: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (sr.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def is_(sr: dict[str, Any], kind: str, status: str, reason: str | None = None) -> bool:
    cond = condition(sr, kind)
    return cond.get("status") == status and (reason is None or cond.get("reason") == reason)


def observed(sr: dict[str, Any]) -> bool:
    """The status is the plan of the spec as it now is."""
    generation: int = sr["metadata"]["generation"]
    return bool((sr.get("status") or {}).get("observedGeneration") == generation)


def wait_release(
    api: client.ApiClient,
    name: str,
    what: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float,
    *,
    failures_expected: bool = False,
) -> dict[str, Any]:
    """The release once its status is of the current generation and `check` holds; fails at once when
    it counts a failed pod and none was expected (a failed pod is never retried: nothing would come)."""

    def found() -> dict[str, Any] | None:
        sr = get_release(api, name)
        if not observed(sr):
            return None
        assert failures_expected or not sr["status"].get("failedPods"), (
            f"release {name}, waiting for {what}: a pod failed to upgrade: {condition(sr, 'Degraded')}\n"
            + failed_pods_story(api, sr)
        )
        return sr if check(sr) else None

    try:
        return kube.wait_until(f"release {name}: {what}", found, timeout, interval=0.5)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nlast status: {get_release(api, name).get('status')}") from None


def failed_pods_story(api: client.ApiClient, sr: dict[str, Any]) -> str:
    """The failed pods' upgrade records and Events, for the failure message (the record's reason alone
    does not say which step failed)."""
    lines = []
    namespace = sr["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    for pod in kube.list_pods(api, namespace, f"app={APP}"):
        record = upgrade.upgrade_record(pod)
        if record is None or record.phase is not Phase.FAILED:
            continue
        name = pod["metadata"]["name"]
        lines.append(f"{name}: {record}")
        events = kube.core(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        for ev in sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time)):
            lines.append(f"  {ev.last_timestamp or ev.event_time} {ev.reason}: {ev.message}")
        lines += controller_log_lines(api, name)
    return "\n".join(lines)


def controller_log_lines(api: client.ApiClient, pod_name: str, most: int = 60) -> list[str]:
    """The running controllers' log lines about `pod_name` (a killed leader's log is gone with its pod)."""
    lines = []
    core = kube.core(api)
    for controller in core.list_pod_for_all_namespaces(label_selector=release.CONTROLLER_PODS).items:
        meta = controller.metadata
        try:
            log = core.read_namespaced_pod_log(meta.name, meta.namespace, container="controller")
        except client.ApiException as exc:
            lines.append(f"  (log of {meta.name}: {exc.status} {exc.reason})")
            continue
        about = [line for line in log.splitlines() if pod_name in line][-most:]
        lines += [f"  {meta.name}: {line}" for line in about]
    return lines


def apply(api: client.ApiClient, manifest: dict[str, Any]) -> int:
    """`kubectl apply` the release; the generation the edit made."""
    kubectl.apply(api, manifest)
    generation: int = get_release(api, manifest["metadata"]["name"])["metadata"]["generation"]
    return generation


def sidecar_image(pod: kube.Pod) -> str:
    """What the pod's active slot runs (the injection status, checked against the container's image)."""
    status = upgrade.status_of(pod)
    assert kube.container_image(pod, status.active) == status.sidecar_image, pod["metadata"]["name"]
    return status.sidecar_image


def in_flight_to(pods: dict[str, kube.Pod], image: str, *, touched: bool) -> dict[str, kube.Pod]:
    """Pods whose upgrade to `image` is in flight (`touched`: past Pending: it has changed the pod)."""
    out = {}
    for name, pod in pods.items():
        record = upgrade.upgrade_record(pod)
        if record is None or record.to_image != image or not record.in_flight:
            continue
        if not touched or record.phase is not Phase.PENDING:
            out[name] = pod
    return out


def targeting(pods: dict[str, kube.Pod], image: str) -> set[str]:
    return {name for name, pod in pods.items() if upgrade_target(pod) == image}


def upgrade_target(pod: kube.Pod) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get("hotupgrade.io/target-image")


def finished_to(pod: kube.Pod, image: str) -> bool:
    """The pod's last upgrade went to `image` and ended (Completed or Failed)."""
    record = upgrade.upgrade_record(pod)
    return record is not None and record.to_image == image and not record.in_flight


def upgrade_of(pod: kube.Pod) -> tuple[str, int, str, Phase] | None:
    """Which upgrade the pod's record is and where it stands (not the Event bookkeeping it also holds)."""
    record = upgrade.upgrade_record(pod)
    return None if record is None else (*record_key(record), record.phase)


def completed_to(history: PodHistory, image: str) -> int:
    return sum(1 for (to, _, _), phase in history.records.items() if to == image and phase is Phase.COMPLETED)


@contextlib.contextmanager
def loads_on(targets: dict[str, str], summaries: dict[str, Any]) -> Iterator[dict[str, LoadGenerator]]:
    """The suite's load at each target (a name -> a pod IP or a ClusterIP); stopped on exit (also when
    the block fails), each one's summary put in `summaries`."""
    started = {name: start_load_to(host, 2400.0) for name, host in targets.items()}
    try:
        yield started
    finally:
        for name, load in started.items():
            with contextlib.suppress(RuntimeError):
                summaries[name] = load.stop()


def incomplete(
    figures: dict[str, Any], started: float, summaries: dict[str, Any], fleet: ReleaseWatch
) -> dict[str, Any]:
    """What a failed run measured up to the failure."""
    out = {**figures, "at_s": round(time.monotonic() - started, 1)}
    out["load"] = {
        n: {**load_figures(s), "failures": s["failures"][:3]} for n, s in sorted(summaries.items())
    }
    out["at_risk"] = fleet.risk_report()
    out["not_ready_s"] = {n: s for n, s in sorted(fleet.not_ready_s().items()) if s}
    out["not_ready_windows"] = fleet.not_ready_windows(started)
    return out


def test_release_rollout_under_load(
    api: client.ApiClient, suite_release: release.Release, namespace: str
) -> None:
    name = f"e2e-{namespace}"
    kubectl.apply_file(api, CRD_FILE, server_side=True)  # helm never upgrades an installed CRD
    pods = conftest.deploy_and_wait(api, namespace, APP, replicas=REPLICAS)
    assert all(sidecar_image(p) == OLD for p in pods)
    service = kube.core(api).create_namespaced_service(namespace, service_manifest(APP))
    cluster_ip = service.spec.cluster_ip
    kube.wait_until(f"Service {APP} answers on {cluster_ip}", lambda: answers(cluster_ip), 60, interval=1.0)
    originals = sorted(p["metadata"]["name"] for p in pods)
    hosts = {"service": cluster_ip, **{p["metadata"]["name"]: p["status"]["podIP"] for p in pods}}
    figures: dict[str, Any] = {"pods": REPLICAS, "scaled_to": SCALED, "apply": kubectl.how(), "phases": {}}
    loads: dict[str, LoadGenerator] = {}
    summaries: dict[str, Any] = {}
    release.wait_leader(api, suite_release)
    fleet = ReleaseWatch(api, namespace, label_selector=f"app={APP}", max_unavailable=MAX_UNAVAILABLE)
    started = time.monotonic()
    try:
        with fleet, loads_on(hosts, summaries) as loads:
            phase = Phases(api, name, namespace=namespace, fleet=fleet, figures=figures)
            phase.partition(originals)
            new_pods = phase.scale_mid_rollout(originals)
            new_ips = {p: kube.get_pod(api, namespace, p)["status"]["podIP"] for p in new_pods}
            with loads_on(new_ips, summaries) as more:
                loads.update(more)
                phase.pause_resume_and_kill(suite_release)
                phase.broken_then_rollback()
                time.sleep(3)  # the last old Envoys have exited; the new ones must keep serving
        figures["wall_s"] = round(time.monotonic() - started, 1)
    finally:
        kubectl.delete(api, release_manifest(name, namespace, NEW))
        if "wall_s" not in figures:  # a phase failed: what was measured up to it, for the report
            report("RELEASE-INCOMPLETE", incomplete(figures, started, summaries, fleet))
    final = {p["metadata"]["name"]: p for p in kube.list_pods(api, namespace, f"app={APP}")}
    upgrades = {n: fleet.history(n).upgrades(Phase.COMPLETED) for n in final}
    failures = {n: fleet.history(n).upgrades(Phase.FAILED) for n in final}
    not_ready = fleet.not_ready_s()
    figures.update(
        {
            "upgrades_completed": sum(upgrades.values()),
            "upgrades_failed": sum(failures.values()),
            "not_ready_s": {n: s for n, s in sorted(not_ready.items()) if s},
            "not_ready_windows": fleet.not_ready_windows(started),
            "max_unavailable": MAX_UNAVAILABLE,
            "at_risk": fleet.risk_report(),
            "watch_events": fleet.events,
            "load": {n: load_figures(s) for n, s in sorted(summaries.items())},
            "requests_total": sum(s["requests"] for s in summaries.values()),
            "failed_total": sum(s["failed"] for s in summaries.values()),
        }
    )
    report("RELEASE", figures)

    assert fleet.error is None, f"the pod watch broke: {fleet.error}"
    assert fleet.events > 100, fleet.events  # every upgrade writes its record several times
    assert not fleet.overlapping, fleet.overlapping
    over = fleet.over_budget()
    assert not over, f"more pods at risk than maxUnavailable {MAX_UNAVAILABLE}: {over[:5]}"
    assert not [n for n in fleet.pods if fleet.history(n).deleted], "a pod was deleted"
    # The README's NotReady budget: none for a completed upgrade, 5 s per failed one.
    for pod_name, seconds in not_ready.items():
        budget = upgrade.NOT_READY_BUDGET_S[Phase.FAILED] * failures.get(pod_name, 0)
        assert seconds <= budget, (pod_name, seconds, failures.get(pod_name, 0))
    upgrade_count = sum(upgrades.values())
    for path, summary in summaries.items():
        assert summary["failed"] == 0, (path, summary["failures"])
        assert summary["requests"] > 100, (path, summary["requests"])
        assert summary["tcp_echoes"] > 0, path
        cuts = upgrade_count if path == "service" else upgrades[path]
        assert_tcp_only_cut_at_parent_exit(loads[path], upgrades=cuts)
    assert sorted(final) == sorted(originals + new_pods)
    for pod_name, pod in final.items():
        app = kube.container_status(pod, "app")
        assert app["restartCount"] == 0, pod_name
        assert sidecar_image(pod) == OLD, pod_name
        status = upgrade.status_of(pod)
        assert kube.container_image(pod, status.standby) == conftest.EMPTY_IMAGE, pod_name
        agent = upgrade.agent_status(pod["status"]["podIP"], status.slots[status.active])
        assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", (
            pod_name,
            agent,
        )
    # Last, so that every other figure is measured even when this branch lacks the webhook's cache.
    phase.assert_new_pods_injected_with_release_image(new_pods)


class Phases:
    """The scenario's steps over one release `name` and the watched fleet; each records its figures."""

    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        *,
        namespace: str,
        fleet: ReleaseWatch,
        figures: dict[str, Any],
    ) -> None:
        self.api, self.name, self.namespace, self.fleet, self.figures = api, name, namespace, fleet, figures
        self.edited_to_new = self.scaled = 0.0  # time.monotonic() of the edit to NEW and of the scale

    def _begin(self, phase: str) -> float:
        self.fleet.phase = phase
        return time.monotonic()

    def _end(self, phase: str, began: float, **more: Any) -> None:
        self.figures["phases"][phase] = {"wall_s": round(time.monotonic() - began, 1), **more}

    def _wait_all_on(self, image: str) -> dict[str, Any]:
        """The release once Complete/AllPodsUpdated over all SCALED pods (its status counts every one)."""
        return wait_release(
            self.api,
            self.name,
            f"all {SCALED} pods on {image}",
            lambda sr: (
                is_(sr, "Complete", "True", "AllPodsUpdated")
                and (sr["status"]["matchedPods"], sr["status"]["updatedPods"]) == (SCALED, SCALED)
            ),
            ROLLOUT_TIMEOUT,
        )

    def _pods(self) -> dict[str, kube.Pod]:
        return {p["metadata"]["name"]: p for p in kube.list_pods(self.api, self.namespace, f"app={APP}")}

    def partition(self, originals: list[str]) -> None:
        """`partition: 3`: exactly the first 3 pods in name order move to NEW; the other 3 stay untouched."""
        began = self._begin("partition-3")
        apply(self.api, release_manifest(self.name, self.namespace, NEW, partition=PARTITION))
        self.edited_to_new = time.monotonic()  # kubectl returned: the API server accepted the edit
        sr = wait_release(
            self.api,
            self.name,
            "Complete/PartitionReached",
            lambda sr: is_(sr, "Complete", "True", "PartitionReached"),
            ROLLOUT_TIMEOUT,
        )
        time.sleep(HELD_S)
        pods = self._pods()
        moved, held = originals[: REPLICAS - PARTITION], originals[REPLICAS - PARTITION :]
        status = sr["status"]
        self._end("partition-3", began, status={k: status[k] for k in ("matchedPods", "updatedPods")})
        assert (status["matchedPods"], status["updatedPods"], status["upgradingPods"]) == (
            REPLICAS,
            REPLICAS - PARTITION,
            0,
        ), status
        for pod_name in moved:
            record = upgrade.upgrade_record(pods[pod_name])
            assert record is not None and record.to_image == NEW and record.phase is Phase.COMPLETED, record
            assert sidecar_image(pods[pod_name]) == NEW, pod_name
        for pod_name in held:
            assert upgrade.upgrade_record(pods[pod_name]) is None, pod_name
            assert upgrade_target(pods[pod_name]) is None, pod_name
            assert sidecar_image(pods[pod_name]) == OLD, pod_name
        assert condition(get_release(self.api, self.name), "Complete")["reason"] == "PartitionReached"

    def scale_mid_rollout(self, originals: list[str]) -> list[str]:
        """`partition: 0`, and the Deployment scaled to 9 while the first of the rest is upgrading; the
        release completes on all 9. The new pods' names."""
        began = self._begin("partition-0-scaled")
        apply(self.api, release_manifest(self.name, self.namespace, NEW))
        rest = originals[REPLICAS - PARTITION :]
        kube.wait_until(
            "an upgrade of the held pods in flight",
            lambda: in_flight_to(
                {n: p for n, p in self.fleet.snapshot().items() if n in rest}, NEW, touched=True
            ),
            ROLLOUT_TIMEOUT,
            interval=0.1,
        )
        kube.apps(self.api).patch_namespaced_deployment_scale(
            APP, self.namespace, {"spec": {"replicas": SCALED}}
        )
        self.scaled = time.monotonic()
        scaled_in_flight = sorted(in_flight_to(self.fleet.snapshot(), NEW, touched=False))

        def all_ready() -> list[str] | None:
            pods = self._pods()
            ready = len(pods) == SCALED and all(kube.condition(p, "Ready") for p in pods.values())
            return sorted(set(pods) - set(originals)) if ready else None

        new_pods = kube.wait_until(
            f"{SCALED} pods Ready", all_ready, conftest.POD_READY_TIMEOUT, interval=1.0
        )
        self.figures["new_pods"] = {n: self._admission(n) for n in new_pods}
        sr = self._wait_all_on(NEW)
        status = sr["status"]
        self._end("partition-0-scaled", began, in_flight_when_scaled=scaled_in_flight, new_pods=new_pods)
        assert (status["updatedPods"], status["upgradingPods"], status["failedPods"]) == (SCALED, 0, 0), (
            status
        )
        assert all(sidecar_image(p) == NEW for p in self._pods().values())
        return new_pods

    def _admission(self, pod_name: str) -> dict[str, Any]:
        """The image a new pod was admitted with, and when the watch saw it created: seconds after the
        edit to NEW was accepted and after the scale request."""
        history = self.fleet.history(pod_name)
        return {
            "admitted_with": upgrade.status_of(history.first).sidecar_image,
            "after_edit_s": round(history.first_at - self.edited_to_new, 1),
            "after_scale_s": round(history.first_at - self.scaled, 2),
        }

    def assert_new_pods_injected_with_release_image(self, new_pods: list[str]) -> None:
        """The 3 pods the scale created were admitted with the release's image (the webhook's release
        cache) and never needed the controller to reach it."""
        admitted = {}
        for pod_name in new_pods:
            history = self.fleet.history(pod_name)
            assert history.created_during, f"{pod_name} existed before the watch"
            admitted[pod_name] = upgrade.status_of(history.first).sidecar_image
        converged = {n: completed_to(self.fleet.history(n), NEW) for n in new_pods}
        assert admitted == dict.fromkeys(new_pods, NEW) and not any(converged.values()), (
            f"pods created after the release moved to {NEW} were admitted with {admitted} and upgraded to it "
            f"by the controller {converged} times: the webhook does not inject the release's image "
            "(its release cache, issue 14 'New pods')"
        )

    def pause_resume_and_kill(self, suite: release.Release) -> None:
        """A rollout to OLD paused after its first batch (the in-flight upgrades finish, nothing new
        starts), resumed, and the leading controller killed mid-rollout (it resumes; all complete)."""
        began = self._begin("paused")
        apply(self.api, release_manifest(self.name, self.namespace, OLD))
        kube.wait_until(
            "a first upgrade to the old image in flight",
            lambda: in_flight_to(self.fleet.snapshot(), OLD, touched=True),
            ROLLOUT_TIMEOUT,
            interval=0.1,
        )
        paused_gen = apply(self.api, release_manifest(self.name, self.namespace, OLD, paused=True))
        sr = wait_release(
            self.api,
            self.name,
            "Paused/PausedBySpec",
            lambda sr: is_(sr, "Paused", "True", "PausedBySpec"),
            60,
        )
        assert sr["metadata"]["generation"] == paused_gen
        seen_paused = time.monotonic()
        started = targeting(self._pods(), OLD)
        assert 0 < len(started) < SCALED, started
        # None stranded: every upgrade queued before the pause runs to its end.
        kube.wait_until(
            "the upgrades queued before the pause to end",
            lambda: all(finished_to(p, OLD) for n, p in self._pods().items() if n in started),
            ROLLOUT_TIMEOUT,
            interval=0.5,
        )
        time.sleep(PAUSE_HOLD_S)
        pods = self._pods()
        late = {n for n in self.fleet.pods if (self.fleet.history(n).target_since(OLD) or 0) > seen_paused}
        assert targeting(pods, OLD) == started and not late, (sorted(started), sorted(targeting(pods, OLD)))
        for pod_name in started:
            record = upgrade.upgrade_record(pods[pod_name])
            assert record is not None and record.phase is Phase.COMPLETED, (
                pod_name,
                record,
                failed_pods_story(self.api, get_release(self.api, self.name)),
            )
        sr = get_release(self.api, self.name)
        assert is_(sr, "Paused", "True", "PausedBySpec") and is_(sr, "Complete", "False"), sr["status"]
        assert is_(sr, "Progressing", "False", "PausedBySpec"), sr["status"]
        assert sr["status"]["updatedPods"] == len(started) and sr["status"]["upgradingPods"] == 0, sr[
            "status"
        ]
        self._end("paused", began, started_before_pause=len(started), held_s=PAUSE_HOLD_S)

        began = self._begin("resumed-controller-killed")
        apply(self.api, release_manifest(self.name, self.namespace, OLD))
        release.wait_leader(self.api, suite)
        # Kill once an upgrade the resume started has changed its pod (its new Envoy is taking over).
        mid = kube.wait_until(
            "an upgrade after the resume taking over",
            lambda: {
                n: p
                for n, p in in_flight_to(self.fleet.snapshot(), OLD, touched=True).items()
                if n not in started
                and (r := upgrade.upgrade_record(p)) is not None
                and r.phase in (Phase.PRE_PULLING, Phase.TAKING_OVER)
            },
            ROLLOUT_TIMEOUT,
            interval=0.1,
        )
        at_kill = {
            n: upgrade.upgrade_record(p)
            for n, p in in_flight_to(self.fleet.snapshot(), OLD, touched=False).items()
        }
        killed, _ = kill_leader(self.api, suite, "delete-pod")
        killed_at = time.monotonic()
        sr = self._wait_all_on(OLD)
        new_leader = release.wait_leader(self.api, suite)["metadata"]["name"]
        pods = self._pods()
        self._end(
            "resumed-controller-killed",
            began,
            killed=killed,
            killed_in={n: str(r.phase) for n, r in at_kill.items() if r is not None},
            leader_after=new_leader,
            resumed_to_complete_s=round(time.monotonic() - killed_at, 1),
        )
        assert mid and new_leader != killed
        assert killed not in release.controller_pods(self.api, suite)
        # The upgrades in flight at the kill were resumed, not started again.
        for pod_name, record in at_kill.items():
            final = upgrade.upgrade_record(pods[pod_name])
            assert record is not None and final is not None, pod_name
            assert (final.attempt, final.started) == (record.attempt, record.started), (
                pod_name,
                record,
                final,
            )
            assert final.phase is Phase.COMPLETED and final.to_image == OLD, (pod_name, final)
        assert sr["status"]["failedPods"] == 0 and all(sidecar_image(p) == OLD for p in pods.values())

    def broken_then_rollback(self) -> None:
        """A broken image fails on maxFailures pods, which pauses the release as Degraded; setting the
        image back to status.previousImages[0] rolls back without upgrading anything."""
        began = self._begin("broken")
        apply(self.api, release_manifest(self.name, self.namespace, BROKEN))
        sr = wait_release(
            self.api,
            self.name,
            "Degraded/TooManyFailures with nothing in flight",
            lambda sr: is_(sr, "Degraded", "True", "TooManyFailures") and sr["status"]["upgradingPods"] == 0,
            ROLLOUT_TIMEOUT,
            failures_expected=True,
        )
        time.sleep(HELD_S)
        sr = get_release(self.api, self.name)
        status = sr["status"]
        pods = self._pods()
        tried = {
            n
            for n, p in pods.items()
            if (r := upgrade.upgrade_record(p)) is not None and r.to_image == BROKEN
        }
        failed = {
            n
            for n, p in pods.items()
            if (r := upgrade.upgrade_record(p)) is not None
            and r.to_image == BROKEN
            and r.phase is Phase.FAILED
        }
        self._end(
            "broken",
            began,
            failed_pods=sorted(failed),
            degraded=condition(sr, "Degraded").get("message"),
            previous_images=status.get("previousImages"),
        )
        assert tried == failed, (sorted(tried), sorted(failed))  # none left in flight
        # The pause stops new starts at maxFailures; up to maxUnavailable-1 in flight then may also fail.
        assert MAX_FAILURES <= len(failed) <= MAX_FAILURES + MAX_UNAVAILABLE - 1, sorted(failed)
        assert status["failedPods"] == len(failed) and status["upgradingPods"] == 0, status
        assert is_(sr, "Paused", "True", "TooManyFailures"), status
        assert is_(sr, "Progressing", "False", "TooManyFailures"), status
        assert is_(sr, "Complete", "False"), status
        assert all(n in condition(sr, "Degraded")["message"] for n in sorted(failed)[:5]), status
        assert all(sidecar_image(p) == OLD for p in pods.values())  # the old Envoys kept serving
        assert status["previousImages"][0] == OLD, status

        began = self._begin("rollback")
        before = {n: upgrade_of(p) for n, p in pods.items()}
        apply(self.api, release_manifest(self.name, self.namespace, status["previousImages"][0]))
        sr = wait_release(
            self.api,
            self.name,
            "rolled back: Complete/AllPodsUpdated, not Degraded",
            lambda sr: (
                is_(sr, "Complete", "True", "AllPodsUpdated") and is_(sr, "Degraded", "False", "NoFailures")
            ),
            120,
        )
        time.sleep(HELD_S)
        after = {n: upgrade_of(p) for n, p in self._pods().items()}
        self._end("rollback", began)
        assert is_(sr, "Paused", "False", "NotPaused"), sr["status"]
        assert (sr["status"]["updatedPods"], sr["status"]["failedPods"]) == (SCALED, 0), sr["status"]
        assert after == before, "the rollback upgraded pods that already ran the image"
