"""Parsing AdmissionReview v1 bodies and building responses."""

import base64
import json
from typing import Any

import pytest

from webhook.admission import BadReviewError, allow, deny, internal_error, parse_review


def review(**request: Any) -> bytes:
    base = {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE"}
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {**base, **request}}
    ).encode()


def test_a_pod_create_review_is_parsed() -> None:
    parsed = parse_review(
        review(namespace="ns", userInfo={"username": "bob"}, dryRun=True, object={"spec": {}})
    )
    assert (parsed.uid, parsed.namespace, parsed.username, parsed.dry_run) == ("u-1", "ns", "bob", True)
    assert parsed.is_pod and parsed.object == {"spec": {}} and parsed.old_object is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (
            json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(),
            "apiVersion",
        ),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Review"}).encode(), "apiVersion/kind"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "'request'"),
        (review(uid=""), "request.uid"),
        (review(uid=7), "request.uid"),
        (review(kind="Pod"), "request.kind"),
        (review(namespace=3), "request.namespace"),
        (review(object=[1]), "request.object"),
        (review(dryRun="yes"), "request.dryRun"),
        (b"[" * 100000, "not JSON"),
    ],
)
def test_bad_reviews_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadReviewError, match=message.replace(".", r"\.").replace("/", "/")):
        parse_review(body)


def test_other_kinds_and_subresources_are_not_pods() -> None:
    assert not parse_review(review(kind={"group": "apps", "version": "v1", "kind": "Deployment"})).is_pod
    assert not parse_review(review(subResource="status")).is_pod


def test_allow_carries_a_base64_json_patch_only_when_there_is_one() -> None:
    patch = [{"op": "add", "path": "/metadata/annotations/a~1b", "value": "x"}]
    answer = allow("u-1", patch)
    assert answer["response"]["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(answer["response"]["patch"])) == patch
    assert "patch" not in allow("u-1", [])["response"]
    assert allow("u-1")["apiVersion"] == "admission.k8s.io/v1"


def test_deny_carries_the_message() -> None:
    answer = deny("u-1", "no")
    assert answer["response"] == {"uid": "u-1", "allowed": False, "status": {"code": 403, "message": "no"}}


def test_an_internal_error_under_ignore_admits_unchanged_with_a_warning() -> None:
    answer = internal_error("u-1", endpoint="mutate", policy="Ignore", error=KeyError("spec"))
    assert answer["response"] == {
        "uid": "u-1",
        "allowed": True,
        "warnings": [
            "hotupgrade webhook: internal error in /mutate (KeyError); "
            "admitted unchanged and unchecked (failurePolicy Ignore)"
        ],
    }
    # k8s.io/api admission/v1: warnings over 256 characters may be cut; the type name is all it carries.
    long_error = RuntimeError("x" * 1000)
    [warning] = internal_error("u-1", endpoint="validate", policy="Ignore", error=long_error)["response"][
        "warnings"
    ]
    assert len(warning) < 256 and "/validate (RuntimeError)" in warning


def test_an_internal_error_under_fail_denies_naming_the_error() -> None:
    answer = internal_error("u-1", endpoint="validate", policy="Fail", error=ValueError("bad slot"))
    assert answer["response"] == {
        "uid": "u-1",
        "allowed": False,
        "status": {
            "code": 500,
            "message": "hotupgrade webhook: internal error in /validate, refused (failurePolicy Fail): "
            "ValueError: bad slot",
        },
    }
    long_error = RuntimeError("x" * 1000)
    status = internal_error("u-1", endpoint="mutate", policy="Fail", error=long_error)["response"]["status"]
    assert status["message"].endswith("RuntimeError: " + "x" * 286)
