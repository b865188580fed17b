"""/mutate over real TLS: fixtures in, patches applied with jsonpatch, patched pods schema-validated."""

from typing import Any

import httpx
import kubernetes_validate
import pytest

from tests.integration.webhook.admission_helpers import apply, patch_of, response_of, review, with_new_uid
from tests.integration.webhook.conftest import WebhookProcess, fixture_names, load_fixture
from webhook import contract
from webhook.injection_status import parse_status

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

KUBERNETES = kubernetes_validate.latest_version()
POD_FIXTURES = [name for name in fixture_names() if name.startswith("create-")]


def mutate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    return response_of(client.post("/mutate", json=body), body["request"]["uid"])


def validate_pod(pod: dict[str, Any]) -> None:
    """Strict schema validation (unknown fields fail) for the newest Kubernetes kubernetes-validate knows."""
    kubernetes_validate.validate(pod, KUBERNETES, strict=True)


def test_the_schema_version_is_recent() -> None:
    assert tuple(int(part) for part in KUBERNETES.split(".")[:2]) >= (1, 37)


@pytest.mark.parametrize("name", POD_FIXTURES)
def test_fixture(client: httpx.Client, name: str) -> None:
    fixture = load_fixture(name)
    body = fixture["review"]
    response = mutate(client, body)
    assert response["allowed"] is True
    patch = patch_of(response)
    obj = body["request"]["object"]
    if fixture["expect"] != "inject":
        assert patch == [], f"{name}: expected no injection ({fixture['expect']})"
        return
    patched = apply(obj, patch)
    validate_pod(patched)
    names = [c["name"] for c in patched["spec"]["containers"]]
    assert names[:2] == ["hotupgrade-a", "hotupgrade-b"]
    assert names[2:] == [c["name"] for c in obj["spec"]["containers"]]
    status = parse_status(patched["metadata"]["annotations"][contract.ANNOTATION_STATUS])
    assert (status.active, status.standby) == ("hotupgrade-a", "hotupgrade-b")
    # What the pod had stays as it was: the patch only adds.
    for key, value in (obj["metadata"].get("annotations") or {}).items():
        assert patched["metadata"]["annotations"][key] == value
    assert {op["op"] for op in patch} == {"add"}


@pytest.mark.parametrize("name", [n for n in POD_FIXTURES if load_fixture(n)["expect"] == "inject"])
def test_reinvocation_of_an_injected_pod_changes_nothing(client: httpx.Client, name: str) -> None:
    body = load_fixture(name)["review"]
    patched = apply(body["request"]["object"], patch_of(mutate(client, body)))
    again = with_new_uid(body)
    again["request"]["object"] = patched
    response = mutate(client, again)
    assert response["allowed"] is True and patch_of(response) == []


def test_the_same_pod_twice_gets_the_same_patch(client: httpx.Client) -> None:
    body = load_fixture("create-deployment-pod")["review"]
    assert patch_of(mutate(client, body)) == patch_of(mutate(client, with_new_uid(body)))


def test_dry_run_gets_the_same_patch(webhook: WebhookProcess, client: httpx.Client) -> None:
    dry = load_fixture("create-dry-run")["review"]
    wet = with_new_uid(dry)
    wet["request"]["dryRun"] = False
    dry_patch = patch_of(mutate(client, dry))
    assert dry_patch and dry_patch == patch_of(mutate(client, wet))
    events = [e for e in webhook.log_events() if e.get("uid") == dry["request"]["uid"]]
    assert events and {(e["event"], e["dry_run"]) for e in events} == {("mutate", True)}


def test_the_namespace_comes_from_the_request_when_the_object_has_none(client: httpx.Client) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "x-"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    assert patch_of(mutate(client, review(pod, namespace="kube-system"))) == []
    assert patch_of(mutate(client, review(pod, namespace="team-a")))


def test_opt_in_and_opt_out_by_pod_label(client: httpx.Client) -> None:
    def pod(labels: dict[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": "p", "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }

    assert patch_of(mutate(client, review(pod({contract.LABEL_POD_INJECT: "true"}))))
    assert patch_of(mutate(client, review(pod({contract.LABEL_POD_INJECT: "false"})))) == []
    # No pod label: the webhook configuration's namespaceSelector already decided this namespace opted in.
    assert patch_of(mutate(client, review(pod({}))))


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE", "CONNECT"])
def test_other_operations_are_allowed_without_a_patch(client: httpx.Client, operation: str) -> None:
    body = load_fixture("create-pod")["review"]
    body["request"]["operation"] = operation
    response = mutate(client, body)
    assert response["allowed"] is True and "patch" not in response


def test_native_sidecar_mode_produces_a_valid_pod(tmp_path: Any) -> None:
    from tests.integration.webhook.conftest import start_webhook

    server = start_webhook(tmp_path, config={"mode": "nativeSidecar", "sidecarImage": "localhost/s:1"})
    try:
        with server.client() as client:
            body = load_fixture("create-deployment-pod")["review"]
            patched = apply(body["request"]["object"], patch_of(mutate(client, body)))
    finally:
        server.stop()
    validate_pod(patched)
    init = patched["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["hotupgrade-a", "hotupgrade-b", "migrate"]
    assert [c.get("restartPolicy") for c in init[:2]] == ["Always", "Always"]
    assert init[0]["image"] == "localhost/s:1"
