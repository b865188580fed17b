"""The Helm chart as the e2e suite installs it: the suite's webhook and controller are the in-cluster ones.

A release's webhooks only see namespaces labelled `SCOPE_LABEL=<release>` (an extra namespace selector)
and its controller only the namespaces it is told to watch; so the suite's session release and
e2e/test_chart.py's own release never inject, guard or upgrade each other's pods, and neither touches
other tests sharing the cluster. Cluster-scoped objects carry the release name
(charts/sidecar-hotupgrade/templates/_helpers.tpl), so two releases never collide.
Runs the project's pinned helm (localcluster/helm.py, `make helm`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from kubernetes import client

from clusterkit import kube
from localcluster.helm import CHART, HelmError, run_helm

# The namespace label naming the one release that may see a namespace.
SCOPE_LABEL = "e2e.hotupgrade.io/release"
HELM_WAIT = "4m"
HELM_TIMEOUT = 5 * 60.0  # helm's own --timeout, plus its time to report
# The chart's default image (values.yaml repository, tag = appVersion), which localcluster/imagebuilder
# builds and imports: no release of the suite sets `image`, so the suite proves the default works.
DEFAULT_IMAGE = "sidecar-hotupgrade/webhook:" + str(
    yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
)
CONTROLLER_PODS = "app.kubernetes.io/component=controller"
WEBHOOK_PODS = "app.kubernetes.io/component=webhook"


class Release(NamedTuple):
    """One installation of the chart: its name and namespace, and the names it gives its objects."""

    name: str
    namespace: str

    @property
    def fullname(self) -> str:
        """The prefix of every object name (the chart's `hotupgrade.fullname`)."""
        return f"{self.name}-sidecar-hotupgrade"

    @property
    def webhook(self) -> str:
        """The webhook's Deployment and Service (the chart's `hotupgrade.webhookName`)."""
        return f"{self.fullname}-webhook"

    @property
    def scope(self) -> dict[str, str]:
        """The labels a namespace needs for this release's webhooks to see it."""
        return {SCOPE_LABEL: self.name}


def values(
    release: Release,
    *,
    sidecar_image: str,
    empty_image: str,
    drain_seconds: int,
    parent_shutdown_seconds: int,
    watch_namespaces: tuple[str, ...],
    allow_image_prefixes: tuple[str, ...] = ("sidecar-hotupgrade/",),
) -> dict[str, Any]:
    """The suite's values: local images, short drains, a fast controller watching `watch_namespaces`
    (all when empty), webhooks seeing only namespaces labelled for `release`."""
    return {
        "injection": {
            "sidecarImage": sidecar_image,
            "emptyImage": empty_image,
            "imagePullPolicy": "IfNotPresent",
            "drainSeconds": drain_seconds,
            "parentShutdownSeconds": parent_shutdown_seconds,
            "ports": {"upstream": 8080, "tcpUpstream": 9000},
            # kind's single node has the machine's 2 CPUs and its control-plane pods request ~950m of
            # them: at the chart's 50m per sidecar the release e2e's 9th pod stayed Pending ("Insufficient
            # cpu"). The suite is not about requests; every other resource setting stays the chart's.
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        },
        "controller": {
            "allowImagePrefixes": list(allow_image_prefixes),
            "stepTimeoutSeconds": 180,
            "drainGraceSeconds": 60,
            "pollIntervalSeconds": 0.5,
            "watchNamespaces": list(watch_namespaces),
        },
        "admission": {
            "namespaceSelectorExpressions": [{"key": SCOPE_LABEL, "operator": "In", "values": [release.name]}]
        },
    }


def helm(*args: str) -> str:
    return run_helm(list(args), timeout=HELM_TIMEOUT).stdout


def installed(release: Release) -> bool:
    """Whether the release exists in any state (deployed, failed, pending-install...)."""
    out = helm("list", "--all", "--namespace", release.namespace, "--filter", f"^{release.name}$", "--short")
    return release.name in out.split()


def diagnose(api: client.ApiClient, release: Release) -> str:
    """Pod states and recent events of the release namespace, for a failed install or upgrade."""
    return kube.namespace_story(api, release.namespace)


def install(api: client.ApiClient, release: Release, values_file: Path, *extra: str) -> None:
    """`helm install --wait` (every Deployment available); the release namespace is created."""
    try:
        helm(
            "install", release.name, str(CHART), "--namespace", release.namespace, "--create-namespace",
            "--values", str(values_file), "--wait", "--timeout", HELM_WAIT, *extra,
        )  # fmt: skip
    except HelmError as exc:
        raise AssertionError(f"{exc}\n{diagnose(api, release)}") from None


def upgrade(api: client.ApiClient, release: Release, values_file: Path, *extra: str) -> None:
    """`helm upgrade --wait` with the values file and extra arguments (`--set ...`)."""
    try:
        helm(
            "upgrade", release.name, str(CHART), "--namespace", release.namespace,
            "--values", str(values_file), "--wait", "--timeout", HELM_WAIT, *extra,
        )  # fmt: skip
    except HelmError as exc:
        raise AssertionError(f"{exc}\n{diagnose(api, release)}") from None


def uninstall(api: client.ApiClient, release: Release) -> None:
    """`helm uninstall --wait` if installed, then the release namespace (not waited for)."""
    if installed(release):
        helm("uninstall", release.name, "--namespace", release.namespace, "--wait", "--timeout", HELM_WAIT)
    try:
        kube.core(api).delete_namespace(release.namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise


def leader(api: client.ApiClient, release: Release) -> str | None:
    """The controller pod holding the release's Lease (the chart sets --identity to the pod name)."""
    try:
        name = f"{release.fullname}-controller-leader"
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, release.namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity if lease.spec else None
    return holder


def controller_pods(api: client.ApiClient, release: Release) -> dict[str, kube.Pod]:
    """The release's controller pods by name."""
    return {p["metadata"]["name"]: p for p in kube.list_pods(api, release.namespace, CONTROLLER_PODS)}


def wait_leader(api: client.ApiClient, release: Release, timeout: float = 120.0) -> kube.Pod:
    """The leading controller pod, once one leads and its pod is Ready."""

    def found() -> kube.Pod | None:
        pod = controller_pods(api, release).get(leader(api, release) or "")
        return pod if pod is not None and kube.condition(pod, "Ready") else None

    return kube.wait_until(f"a controller of {release.name} leads", found, timeout, interval=0.5)


def controller_pid(pod: kube.Pod) -> int:
    """Host PID of the controller process in `pod` (the suite runs on the node's kernel)."""
    pids = kube.pod_processes(pod["metadata"]["uid"], "hotupgrade-controller")
    if len(pids) != 1:
        raise AssertionError(f"expected one controller process in {pod['metadata']['name']}: {pids}")
    return pids[0]


def kill_controller(pod: kube.Pod) -> None:
    """SIGKILL the controller process of `pod`: a crash (no lease release); the kubelet restarts it."""
    os.kill(controller_pid(pod), signal.SIGKILL)


def webhook_serves(api: client.ApiClient, release: Release, namespace: str) -> bool:
    """The release's webhook injects again: a dry-run pod in `namespace` (opted in, in its scope) gets the
    pair (the API server calls mutating webhooks for dry runs: sideEffects None)."""
    pod = {"metadata": {"generateName": "probe-"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    try:
        created = kube.core(api).create_namespaced_pod(namespace, pod, dry_run="All", _preload_content=False)
    except client.ApiException:
        return False
    annotations = (json.loads(created.data)["metadata"].get("annotations") or {}).keys()
    return any(key.startswith("hotupgrade.io/") for key in annotations)


@contextlib.contextmanager
def webhook_down(api: client.ApiClient, release: Release, namespace: str) -> Iterator[None]:
    """The release's webhook Deployment scaled to zero (every replica gone) for the block; afterwards, even
    when the block fails, scaled back and waited for until it injects in `namespace` again."""
    deployments = kube.apps(api)
    replicas = deployments.read_namespaced_deployment_scale(release.webhook, release.namespace).spec.replicas
    try:
        deployments.patch_namespaced_deployment_scale(
            release.webhook, release.namespace, {"spec": {"replicas": 0}}
        )
        kube.wait_until(
            f"no pod of {release.webhook}",
            lambda: not kube.list_pods(api, release.namespace, WEBHOOK_PODS),
            120,
        )
        yield
    finally:
        deployments.patch_namespaced_deployment_scale(
            release.webhook, release.namespace, {"spec": {"replicas": replicas}}
        )
        kube.wait_until(
            f"{release.webhook} injects again", lambda: webhook_serves(api, release, namespace), 180
        )
