"""Building AdmissionReviews and reading responses in the integration tests."""

import base64
import copy
import json
import uuid
from typing import Any

import httpx
import jsonpatch
from kubernetes import client


def response_of(http: httpx.Response, uid: str) -> dict[str, Any]:
    """The AdmissionReview response, checked for the fields Kubernetes requires."""
    assert http.status_code == 200, http.text
    body = http.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    assert response["uid"] == uid
    return response


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in response:
        return []
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    assert patch, "an empty patch must be omitted"
    return patch


def apply(obj: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), patch)
    return patched


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    namespace: str = "default",
    old: dict[str, Any] | None = None,
    username: str = "kubernetes-admin",
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": username},
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
        },
    }


def with_new_uid(body: dict[str, Any]) -> dict[str, Any]:
    renewed = copy.deepcopy(body)
    renewed["request"]["uid"] = str(uuid.uuid4())
    return renewed


def ensure_default_service_account(core: Any, namespace: str) -> None:
    """The ServiceAccount admission plugin refuses pods until the namespace's `default` account exists.

    kube-controller-manager creates it; creating it here keeps API-only tests off that dependency.
    """
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise
