"""The Flask app: thin HTTP shells around the pure injection (webhook.inject) and guard (webhook.guard).

Error mapping lives here and only here: a body that is not an AdmissionReview v1 gets HTTP 400 with
the reason (never an HTTP 500 for bad input); a review about something else gets `allowed: true`; an
unexpected failure after the uid is known gets what the endpoint's configured failurePolicy says
(admission.internal_error: Ignore admits unchanged with a warning, Fail denies naming the error). A
failure before the uid is known is a bug and shows as HTTP 500, which the API server itself answers
under the same failurePolicy.
"""

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request

from webhook import admission, logs
from webhook.admission import AdmissionRequest, BadReviewError, ReviewJSON
from webhook.config import Endpoint, WebhookConfig
from webhook.config_source import ConfigSource
from webhook.guard import Verdict, review_update
from webhook.inject import Decision, JSONPatch, plan_injection
from webhook.metrics import Metrics

Handler = Callable[[AdmissionRequest, WebhookConfig], tuple[ReviewJSON, str]]


class Planner(Protocol):
    """The injection core /mutate calls (webhook.inject.plan_injection)."""

    def __call__(
        self, pod: Mapping[str, Any], /, *, namespace: str, config: WebhookConfig, pod_security_enforced: bool
    ) -> tuple[Decision, JSONPatch]: ...


class Guard(Protocol):
    """The guard core /validate calls (webhook.guard.review_update)."""

    def __call__(
        self, old: Mapping[str, Any], new: Mapping[str, Any], /, *, username: str, controller_user: str
    ) -> Verdict: ...


class BodyTooLargeError(BadReviewError):
    """The request body is over the configured limit."""


def read_body(limit: int) -> bytes:
    """Read at most `limit` bytes of the request body, or raise BadReviewError.

    A client that stalls mid-body times out (webhook.tls bounds every socket read) and gets a 400.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise BodyTooLargeError(f"body is {length} bytes, over the limit of {limit} bytes")
    try:
        body = request.stream.read(limit + 1)
    except (TimeoutError, OSError) as exc:
        raise BadReviewError(f"could not read the body: {exc}") from exc
    if len(body) > limit:
        raise BodyTooLargeError(f"body is over the limit of {limit} bytes")
    return body


def _pod_label(pod: dict[str, Any] | None, fallback: str) -> str:
    metadata = pod.get("metadata") if pod is not None else None
    if isinstance(metadata, dict):
        for key in ("name", "generateName"):
            if isinstance(metadata.get(key), str) and metadata[key]:
                return str(metadata[key])
    return fallback


def create_app(
    config_source: ConfigSource,
    metrics: Metrics,
    *,
    plan: Planner = plan_injection,
    guard: Guard = review_update,
) -> Flask:
    """The webhook app for a config source and a metrics set (both owned by the caller).

    `plan` and `guard` are the pure cores the handlers call; tests hand in failing ones.
    """
    app = Flask("webhook")

    def mutate(
        review: AdmissionRequest, config: WebhookConfig, pod_security_enforced: bool = False
    ) -> tuple[ReviewJSON, str]:
        if not review.is_pod or review.operation != "CREATE":
            return admission.allow(review.uid), "allowed"
        if review.object is None:
            raise BadReviewError("request.object must be the Pod for a CREATE")
        metadata = review.object.get("metadata")
        namespace = review.namespace or (
            str(metadata.get("namespace") or "") if isinstance(metadata, dict) else ""
        )
        decision, patch = plan(
            review.object, namespace=namespace, config=config, pod_security_enforced=pod_security_enforced
        )
        metrics.injections.labels(decision.reason).inc()
        logs.event(
            "mutate",
            level=logging.WARNING if decision.warning else logging.INFO,
            uid=review.uid,
            namespace=namespace,
            pod=_pod_label(review.object, review.name),
            decision=decision.reason,
            placement=decision.placement,
            patch_ops=len(patch),
            dry_run=review.dry_run,
            detail=decision.warning or None,
        )
        warnings = [decision.warning] if decision.warning else None
        return admission.allow(review.uid, patch, warnings), "patched" if patch else "allowed"

    def validate(review: AdmissionRequest, config: WebhookConfig) -> tuple[ReviewJSON, str]:
        if not review.is_pod or review.operation != "UPDATE":
            return admission.allow(review.uid), "allowed"
        if review.object is None or review.old_object is None:
            raise BadReviewError("request.object and request.oldObject must be the Pod for an UPDATE")
        verdict = guard(
            review.old_object,
            review.object,
            username=review.username,
            controller_user=config.controller_service_account,
        )
        if verdict.allowed:
            return admission.allow(review.uid), "allowed"
        metrics.denials.labels(verdict.reason).inc()
        logs.event(
            "guard-denied",
            uid=review.uid,
            namespace=review.namespace,
            pod=_pod_label(review.old_object, review.name),
            user=review.username,
            reason=verdict.reason,
        )
        return admission.deny(review.uid, verdict.message), "denied"

    def answer(endpoint: Endpoint, handler: Handler) -> tuple[object, str, int]:
        """The payload, the result label and the HTTP status: the one place errors are mapped."""
        uid = ""
        config = config_source.current()  # one config per request: its body limit, rules and policy
        try:
            review = admission.parse_review(read_body(config.max_request_bytes))
            uid = review.uid
            payload, result = handler(review, config)
        except BadReviewError as exc:
            logs.event("bad-request", level=logging.WARNING, endpoint=endpoint, uid=uid, error=str(exc))
            return {"error": str(exc)}, "bad_request", 400
        except Exception as exc:
            if not uid:
                raise  # parse_review raises only BadReviewError for bad input: this is a bug, let it show
            policy = config.failure_policy.of(endpoint)
            logs.event(
                "admission-failed",
                level=logging.ERROR,
                endpoint=endpoint,
                uid=uid,
                failure_policy=policy,
                allowed=policy == "Ignore",
                exc_info=True,
            )
            failed = admission.internal_error(uid, endpoint=endpoint, policy=policy, error=exc)
            return failed, "error_ignored" if policy == "Ignore" else "error", 200
        return payload, result, 200

    def serve(endpoint: Endpoint, handler: Handler) -> tuple[Response, int]:
        started = time.perf_counter()
        payload, result, status = answer(endpoint, handler)
        metrics.admissions.labels(endpoint, result).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return jsonify(payload), status

    @app.post("/mutate")
    def mutate_endpoint() -> tuple[Response, int]:
        return serve("mutate", mutate)

    # The chart sends pods of namespaces that enforce Pod Security baseline or restricted here (by
    # namespaceSelector, so no namespace lookup): capture cannot be injected there (webhook/capture.py).
    @app.post("/mutate/pod-security-enforced")
    def mutate_enforced_endpoint() -> tuple[Response, int]:
        return serve("mutate", lambda review, config: mutate(review, config, pod_security_enforced=True))

    @app.post("/validate")
    def validate_endpoint() -> tuple[Response, int]:
        return serve("validate", validate)

    @app.get("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok\n", 200

    @app.get("/readyz")
    def readyz() -> tuple[str, int]:
        config_source.current()  # a config source that cannot answer makes this raise: not ready
        return "ok\n", 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.exposition(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    return app
