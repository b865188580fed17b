"""The chart's guard match conditions, evaluated by the real kube-apiserver, with the webhook down.

The ValidatingWebhookConfiguration is the chart's own (helm template), pointed at a dead endpoint with
failurePolicy Fail and scoped to a namespace of this test. An update the API server sends to the webhook
then fails ("failed calling webhook"), one it does not send succeeds: that is exactly what the match
conditions decide. Users must still be able to edit labels, finalizers (the Job controller) and their own
requests; the changes the guard exists to refuse must reach it however they are split; the controller's
own updates never wait for the webhook. Pods are pinned to a node that does not exist, so nothing runs.
"""

import copy
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config

from localcluster.helm import CHART, run_helm
from tests.integration.apiserver import reachable_kubeconfig
from tests.integration.chart.tokens import as_service_account
from tests.integration.webhook.admission_helpers import ensure_default_service_account
from webhook import contract
from webhook.config import WebhookConfig
from webhook.inject import inject

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TOKEN = secrets.token_hex(4)
RELEASE_NAMESPACE = f"hu-guard-rel-{TOKEN}"
POD_NAMESPACE = f"hu-guard-{TOKEN}"
TEST_LABEL = "hotupgrade.io/guard-test"
CONTROLLER_SA = "hu-sidecar-hotupgrade-controller"
DEAD_ENDPOINT = "https://127.0.0.1:1/validate"
JOB_FINALIZER = "batch.kubernetes.io/job-tracking"
NOWHERE = {"kubernetes.io/hostname": f"no-such-node-{TOKEN}"}

Patch = dict[str, Any]
# A JSON patch (a list of operations) or a strategic merge patch (a dict), as the client sends them.
Change = list[Patch] | Patch


def api_of(kind: str, api: client.ApiClient) -> Any:
    return getattr(client, kind)(api)


def rendered_guard() -> dict[str, Any]:
    """The chart's ValidatingWebhookConfiguration for a release in RELEASE_NAMESPACE, aimed at nothing."""
    text = run_helm(
        [
            "template",
            "hu",
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--show-only",
            "templates/webhookconfigurations.yaml",
            "--set",
            f"admission.namespaceSelectorExpressions[0].key={TEST_LABEL}",
            "--set",
            "admission.namespaceSelectorExpressions[0].operator=In",
            # --set-string: a hex token that happens to be all digits would reach the schema as a number.
            "--set-string",
            f"admission.namespaceSelectorExpressions[0].values={{{TOKEN}}}",
        ]
    ).stdout
    [vwc] = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "ValidatingWebhookConfiguration"]
    vwc["metadata"] = {"name": f"hu-guard-test-{TOKEN}"}
    [hook] = vwc["webhooks"]
    hook["clientConfig"] = {"url": DEAD_ENDPOINT}
    hook["failurePolicy"] = "Fail"
    hook["timeoutSeconds"] = 2
    guard: dict[str, Any] = vwc
    return guard


@pytest.fixture(scope="module")
def admin() -> Iterator[client.ApiClient]:
    api: client.ApiClient = kube_config.new_client_from_config(config_file=reachable_kubeconfig())  # type: ignore[no-untyped-call]
    yield api


@pytest.fixture(scope="module")
def guarded(admin: client.ApiClient) -> Iterator[None]:
    core, rbac = api_of("CoreV1Api", admin), api_of("RbacAuthorizationV1Api", admin)
    adm = api_of("AdmissionregistrationV1Api", admin)
    core.create_namespace({"metadata": {"name": RELEASE_NAMESPACE}})
    core.create_namespace({"metadata": {"name": POD_NAMESPACE, "labels": {TEST_LABEL: TOKEN}}})
    guard = rendered_guard()
    try:
        ensure_default_service_account(core, POD_NAMESPACE)
        core.create_namespaced_service_account(RELEASE_NAMESPACE, {"metadata": {"name": CONTROLLER_SA}})
        rules = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
        rbac.create_namespaced_role(POD_NAMESPACE, {"metadata": {"name": "controller"}, "rules": rules})
        subject = {"kind": "ServiceAccount", "name": CONTROLLER_SA, "namespace": RELEASE_NAMESPACE}
        binding = {
            "metadata": {"name": "controller"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "controller"},
            "subjects": [subject],
        }
        rbac.create_namespaced_role_binding(POD_NAMESPACE, binding)
        adm.create_validating_webhook_configuration(guard)
        wait_until_enforced(admin)
        yield
    finally:
        adm.delete_validating_webhook_configuration(guard["metadata"]["name"])
        core.delete_namespace(POD_NAMESPACE)
        core.delete_namespace(RELEASE_NAMESPACE)


def wait_until_enforced(admin: client.ApiClient) -> None:
    """The API server picks up a new webhook configuration asynchronously: wait until it refuses."""
    deadline = time.monotonic() + 60
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        name = create_pod(admin, f"probe-{attempt}")
        if refused_by_dead_webhook(update(admin, name, drop_annotation(contract.ANNOTATION_STATUS))):
            return
        time.sleep(0.5)
    raise AssertionError("the guard never took effect")


def injected_pod(name: str, config: WebhookConfig) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeSelector": NOWHERE, "containers": [{"name": "app", "image": "app:1"}]},
    }
    return inject(pod, namespace=POD_NAMESPACE, config=config)


def create_pod(admin: client.ApiClient, name: str, config: WebhookConfig | None = None) -> str:
    pod = injected_pod(name, config or WebhookConfig())
    api_of("CoreV1Api", admin).create_namespaced_pod(POD_NAMESPACE, pod)
    return name


def as_controller(admin: client.ApiClient) -> client.ApiClient:
    return as_service_account(admin, CONTROLLER_SA, RELEASE_NAMESPACE)


def update(api: client.ApiClient, name: str, change: Callable[[dict[str, Any]], Change]) -> str | None:
    """Apply a patch computed from the current pod; None on success, else the API server's error."""
    core = api_of("CoreV1Api", api)
    pod = api.sanitize_for_serialization(core.read_namespaced_pod(name, POD_NAMESPACE))  # type: ignore[no-untyped-call]
    try:
        core.patch_namespaced_pod(name, POD_NAMESPACE, change(pod))
    except client.ApiException as exc:
        return f"{exc.status} {exc.body}"
    return None


def refused_by_dead_webhook(error: str | None) -> bool:
    return error is not None and 'failed calling webhook \\"guard.hotupgrade.io\\"' in error


# Patch builders: each returns a JSON patch for the pod as it is now.


def container_index(pod: dict[str, Any], key: str, name: str) -> int:
    return [c["name"] for c in pod["spec"][key]].index(name)


def set_image(name: str, image: str, key: str = "containers") -> Callable[[dict[str, Any]], Change]:
    def change(pod: dict[str, Any]) -> list[Patch]:
        return [
            {"op": "replace", "path": f"/spec/{key}/{container_index(pod, key, name)}/image", "value": image}
        ]

    return change


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def set_annotation(key: str, value: str) -> Callable[[dict[str, Any]], Change]:
    return lambda pod: {"metadata": {"annotations": {key: value}}}


def drop_annotation(key: str) -> Callable[[dict[str, Any]], Change]:
    return lambda pod: [{"op": "remove", "path": f"/metadata/annotations/{escape(key)}"}]


def set_label(key: str, value: str) -> Callable[[dict[str, Any]], Change]:
    return lambda pod: {"metadata": {"labels": {key: value}}}


def set_finalizers(finalizers: list[str]) -> Callable[[dict[str, Any]], Change]:
    return lambda pod: [{"op": "add", "path": "/metadata/finalizers", "value": finalizers}]


def remove_job_tracking_finalizer(pod: dict[str, Any]) -> Change:
    # The Job controller's own patch (pkg/controller/job, removeTrackingFinalizerPatch).
    return {"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_FINALIZER]}}


def rewrite_status(pod: dict[str, Any]) -> Change:
    status = json.loads(pod["metadata"]["annotations"][contract.ANNOTATION_STATUS])
    status["active"], status["standby"] = status["standby"], status["active"]
    return set_annotation(contract.ANNOTATION_STATUS, json.dumps(status))(pod)


NOT_GUARDED: dict[str, Callable[[dict[str, Any]], Change]] = {
    "a label": set_label("team", "payments"),
    "a finalizer added": set_finalizers([JOB_FINALIZER]),
    "the app's image": set_image("app", "app:2"),
    "the target image (the user's request)": set_annotation(contract.ANNOTATION_TARGET_IMAGE, "sidecar:2"),
    "an abort request": set_annotation("hotupgrade.io/abort", "now"),
    "a retry request": set_annotation("hotupgrade.io/retry", "1"),
    "another annotation": set_annotation("example.com/owner", "team-a"),
}
GUARDED: dict[str, Callable[[dict[str, Any]], Change]] = {
    "the status removed": drop_annotation(contract.ANNOTATION_STATUS),
    "the status rewritten": rewrite_status,
    "an upgrade record added": set_annotation(contract.ANNOTATION_UPGRADE, "{}"),
    "an unknown hotupgrade.io annotation": set_annotation("hotupgrade.io/anything", "x"),
    "the active image": set_image("hotupgrade-a", "sidecar:9"),
    "the standby image": set_image("hotupgrade-b", "sidecar:9"),
}


@pytest.mark.parametrize("what", NOT_GUARDED)
def test_with_the_webhook_down_users_can_still_change(
    admin: client.ApiClient, guarded: None, what: str
) -> None:
    name = create_pod(admin, f"free-{secrets.token_hex(3)}")
    assert update(admin, name, NOT_GUARDED[what]) is None


def test_the_job_controller_can_remove_its_finalizer(admin: client.ApiClient, guarded: None) -> None:
    name = create_pod(admin, f"job-{secrets.token_hex(3)}")
    assert update(admin, name, set_finalizers([JOB_FINALIZER])) is None
    assert update(admin, name, remove_job_tracking_finalizer) is None
    pod = api_of("CoreV1Api", admin).read_namespaced_pod(name, POD_NAMESPACE)
    assert not pod.metadata.finalizers


@pytest.mark.parametrize("what", GUARDED)
def test_what_the_guard_refuses_reaches_it(admin: client.ApiClient, guarded: None, what: str) -> None:
    name = create_pod(admin, f"guarded-{secrets.token_hex(3)}")
    error = update(admin, name, GUARDED[what])
    assert refused_by_dead_webhook(error), error


def test_a_split_change_reaches_it_at_every_step(admin: client.ApiClient, guarded: None) -> None:
    # The case files: the status annotation goes first (here by the controller, who may), then a user
    # sets the image: the pair is recognised without the status annotation.
    name = create_pod(admin, f"split-{secrets.token_hex(3)}")
    assert refused_by_dead_webhook(update(admin, name, drop_annotation(contract.ANNOTATION_STATUS)))
    assert update(as_controller(admin), name, drop_annotation(contract.ANNOTATION_STATUS)) is None
    error = update(admin, name, set_image("hotupgrade-a", "registry.example.com/sidecar:9"))
    assert refused_by_dead_webhook(error), error


def test_the_controller_never_waits_for_the_webhook(admin: client.ApiClient, guarded: None) -> None:
    name = create_pod(admin, f"ctrl-{secrets.token_hex(3)}")
    controller = as_controller(admin)
    assert update(controller, name, set_image("hotupgrade-b", "sidecar:2")) is None
    assert update(controller, name, rewrite_status) is None
    assert update(controller, name, set_annotation(contract.ANNOTATION_UPGRADE, "{}")) is None


def test_native_sidecars_are_guarded_in_init_containers(admin: client.ApiClient, guarded: None) -> None:
    name = create_pod(admin, f"native-{secrets.token_hex(3)}", WebhookConfig(mode="nativeSidecar"))
    error = update(admin, name, set_image("hotupgrade-a", "sidecar:9", key="initContainers"))
    assert refused_by_dead_webhook(error), error
    assert update(admin, name, set_image("app", "app:2")) is None


def test_pods_that_were_never_injected_are_not_guarded_unless_they_gain_a_status(
    admin: client.ApiClient, guarded: None
) -> None:
    core = api_of("CoreV1Api", admin)
    name = f"plain-{secrets.token_hex(3)}"
    pod = {
        "metadata": {"name": name},
        "spec": {"nodeSelector": NOWHERE, "containers": [{"name": "app", "image": "a:1"}]},
    }
    core.create_namespaced_pod(POD_NAMESPACE, copy.deepcopy(pod))
    assert update(admin, name, set_image("app", "a:2")) is None
    assert update(admin, name, set_label("x", "y")) is None
    error = update(admin, name, set_annotation(contract.ANNOTATION_STATUS, "{}"))
    assert refused_by_dead_webhook(error), error
