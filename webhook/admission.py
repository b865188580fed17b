"""AdmissionReview v1 on the wire: parse a request body, build a response. Pure, no Flask.

A body that is not an AdmissionReview v1 with a `request.uid` raises BadReviewError (HTTP 400 with its
message). A well-formed review about something this webhook does not handle gets `allowed: true`. An
internal error gets what the API server would have done under the webhook's failurePolicy
(`internal_error`).
"""

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from webhook.config import Endpoint, FailurePolicy

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


class BadReviewError(ValueError):
    """The body is not an AdmissionReview this webhook can answer; the message says what is wrong."""


class StatusJSON(TypedDict):
    code: int
    message: str


class ResponseJSON(TypedDict):
    uid: str
    allowed: bool
    patchType: NotRequired[Literal["JSONPatch"]]
    patch: NotRequired[str]
    status: NotRequired[StatusJSON]
    warnings: NotRequired[list[str]]


class ReviewJSON(TypedDict):
    apiVersion: str
    kind: str
    response: ResponseJSON


@dataclass(frozen=True)
class AdmissionRequest:
    """The fields of `request` the handlers use, type-checked."""

    uid: str
    group: str
    kind: str
    operation: str
    sub_resource: str
    namespace: str
    name: str
    username: str
    dry_run: bool
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None

    @property
    def is_pod(self) -> bool:
        return self.group == "" and self.kind == "Pod" and self.sub_resource == ""


def _string(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadReviewError(f"request.{key} must be a string, got {type(value).__name__}")
    return value


def _object(request: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadReviewError(f"request.{key} must be an object, got {type(value).__name__}")
    return value


def parse_review(body: bytes) -> AdmissionRequest:
    """Parse and check an AdmissionReview v1 body; raise BadReviewError naming the first problem."""
    try:
        review: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadReviewError(f"body is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(review, dict):
        raise BadReviewError(f"body must be a JSON object (an AdmissionReview), got {type(review).__name__}")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise BadReviewError(
            f"unsupported apiVersion/kind {str(review.get('apiVersion'))[:100]!r}/"
            f"{str(review.get('kind'))[:100]!r}: this webhook speaks {API_VERSION} {KIND}"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise BadReviewError("AdmissionReview has no 'request' object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReviewError("request.uid must be a non-empty string")
    kind = request.get("kind")
    if not isinstance(kind, dict):
        raise BadReviewError("request.kind must be an object with group, version and kind")
    user_info = request.get("userInfo")
    username = ""
    if isinstance(user_info, dict):
        username = _string(user_info, "username")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise BadReviewError("request.dryRun must be a boolean")
    return AdmissionRequest(
        uid=uid,
        group=_string(kind, "group"),
        kind=_string(kind, "kind"),
        operation=_string(request, "operation"),
        sub_resource=_string(request, "subResource"),
        namespace=_string(request, "namespace"),
        name=_string(request, "name"),
        username=username,
        dry_run=dry_run,
        object=_object(request, "object"),
        old_object=_object(request, "oldObject"),
    )


def allow(
    uid: str, patch: list[dict[str, Any]] | None = None, warnings: list[str] | None = None
) -> ReviewJSON:
    """Allow, with a JSON patch when there is one (never an empty patch) and warnings for the client."""
    response = ResponseJSON(uid=uid, allowed=True)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        response["warnings"] = warnings
    return ReviewJSON(apiVersion=API_VERSION, kind=KIND, response=response)


def deny(uid: str, message: str, code: int = 403) -> ReviewJSON:
    """Deny with a message the user sees in kubectl's error."""
    response = ResponseJSON(uid=uid, allowed=False, status=StatusJSON(code=code, message=message))
    return ReviewJSON(apiVersion=API_VERSION, kind=KIND, response=response)


def internal_error(
    uid: str, *, endpoint: Endpoint, policy: FailurePolicy, error: BaseException
) -> ReviewJSON:
    """Answer an unexpected failure as `policy` says: Ignore admits with no patch and a warning, Fail denies.

    The warning stays short: k8s.io/api admission/v1 AdmissionResponse.warnings asks for 120 characters
    if possible and may cut one over 256. The traceback is for the log.
    """
    prefix = f"hotupgrade webhook: internal error in /{endpoint}"
    if policy == "Ignore":
        review = allow(uid)
        review["response"]["warnings"] = [
            f"{prefix} ({type(error).__name__}); admitted unchanged and unchecked (failurePolicy Ignore)"
        ]
        return review
    detail = f"{type(error).__name__}: {error}"[:300]
    return deny(uid, f"{prefix}, refused (failurePolicy Fail): {detail}", 500)
