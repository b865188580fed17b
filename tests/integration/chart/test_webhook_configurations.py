"""The webhook configurations: required fields, values wiring, and the opt-in rules as selectors."""

import itertools
from typing import Any

import pytest

from localcluster.helm import NAMESPACE, Rendered, ci_values_names, config_of, rendered
from tests.integration.chart.selectors import matches
from webhook import contract
from webhook.config import Endpoint, parse_config
from webhook.guard import USER_ANNOTATIONS
from webhook.inject import decide

VALUE_SETS = [[], *[[name] for name in ci_values_names()]]
# Where the mutating entries send pods: with capture on, namespaces that enforce Pod Security baseline or
# restricted go to the second path (webhook/app.py), where the webhook refuses capture.
MUTATE_PATHS = ("/mutate", "/mutate/pod-security-enforced")
IDS = ["default", *ci_values_names()]


def _webhooks(r: Rendered) -> list[tuple[str, dict[str, Any]]]:
    return [
        (kind, hook)
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for hook in r.one(kind)["webhooks"]
    ]


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_required_fields(values: list[str]) -> None:
    r = rendered(values)
    service = r.one("Service", next(iter(n for n in r.names("Service") if n.endswith("webhook"))))
    service_port = service["spec"]["ports"][0]["port"]
    hooks = _webhooks(r)
    assert len({hook["name"] for _, hook in hooks}) == len(hooks)
    for kind, hook in hooks:
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["failurePolicy"] in ("Fail", "Ignore") and 1 <= hook["timeoutSeconds"] <= 30
        assert "caBundle" not in hook["clientConfig"], "caBundle is filled at run time, never by Helm"
        svc = hook["clientConfig"]["service"]
        assert (svc["name"], svc["namespace"], svc["port"]) == (
            service["metadata"]["name"],
            NAMESPACE,
            service_port,
        )
        [rule] = hook["rules"]
        assert (rule["apiGroups"], rule["apiVersions"], rule["resources"]) == ([""], ["v1"], ["pods"])
        if kind == "MutatingWebhookConfiguration":
            assert svc["path"] in MUTATE_PATHS and rule["operations"] == ["CREATE"]
        else:
            assert (svc["path"], rule["operations"]) == ("/validate", ["UPDATE"])


def test_failure_policy_and_timeouts_come_from_values() -> None:
    default = {hook["name"]: hook for _, hook in _webhooks(rendered())}
    assert {h["failurePolicy"] for h in default.values()} == {"Fail"}
    assert {h["timeoutSeconds"] for h in default.values()} == {10}
    changed = _webhooks(rendered(["native-sidecar"]))
    for kind, hook in changed:
        expected = ("Ignore", 5) if kind == "MutatingWebhookConfiguration" else ("Ignore", 3)
        assert (hook["failurePolicy"], hook["timeoutSeconds"]) == expected
        if kind == "MutatingWebhookConfiguration":
            assert hook["reinvocationPolicy"] == "IfNeeded"


POLICY_CASES = [
    *[(values, []) for values in VALUE_SETS],
    ([], ["admission.mutating.failurePolicy=Ignore"]),
    ([], ["admission.validating.failurePolicy=Ignore"]),
    (["native-sidecar"], ["admission.validating.failurePolicy=Fail"]),
]


@pytest.mark.parametrize(
    ("values", "sets"),
    POLICY_CASES,
    ids=[*IDS, "mutating-ignore", "validating-ignore", "mutating-ignore-validating-fail"],
)
def test_the_webhook_answers_internal_errors_under_each_configurations_failure_policy(
    values: list[str], sets: list[str]
) -> None:
    # The webhook learns the policy from its ConfigMap: both come from the same values, so they agree.
    r = rendered(values, sets)
    policies = parse_config(config_of(r)).failure_policy
    hooks = _webhooks(r)
    for kind, hook in hooks:
        endpoint: Endpoint = "mutate" if kind == "MutatingWebhookConfiguration" else "validate"
        path = hook["clientConfig"]["service"]["path"]
        assert path in MUTATE_PATHS if endpoint == "mutate" else path == "/validate"
        assert policies.of(endpoint) == hook["failurePolicy"], (kind, hook["name"])
    if sets:  # each case above sets the two policies apart
        assert {policies.mutate, policies.validate} == {"Fail", "Ignore"}


def _namespace_labels(name: str, injection: str | None) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": name}  # set by the API server on every namespace
    if injection is not None:
        labels[contract.LABEL_NAMESPACE_INJECTION] = injection
    return labels


def _pod(inject: str | None) -> dict[str, Any]:
    labels = {"app": "demo"} if inject is None else {"app": "demo", contract.LABEL_POD_INJECT: inject}
    return {
        "metadata": {"generateName": "demo-", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "demo:1"}]},
    }


def _expected(namespace: str, ns_label: str | None, pod_label: str | None, excluded: set[str]) -> bool:
    """The opt-in rules of issue 3, written out plainly."""
    if namespace in excluded or pod_label == "false":
        return False
    return pod_label == "true" or ns_label == "enabled"


@pytest.mark.parametrize("values", [[], ["native-sidecar"]], ids=["default", "extra-excluded"])
def test_opt_in_rules_hold_for_every_combination(values: list[str]) -> None:
    r = rendered(values)
    config = parse_config(config_of(r))
    mutating = r.one("MutatingWebhookConfiguration")["webhooks"]
    excluded = set(config.system_namespaces)
    namespaces = ["apps", NAMESPACE, *sorted(excluded)]
    checked = 0
    for namespace, ns_label, pod_label in itertools.product(
        namespaces, [None, "enabled", "disabled"], [None, "true", "false", "yes"]
    ):
        ns_labels = _namespace_labels(namespace, ns_label)
        pod = _pod(pod_label)
        called = [
            hook["name"]
            for hook in mutating
            if matches(hook["namespaceSelector"], ns_labels)
            and matches(hook["objectSelector"], pod["metadata"]["labels"])
        ]
        assert len(called) <= 1, f"{namespace}/{ns_label}/{pod_label}: sent to /mutate twice: {called}"
        injected = bool(called) and decide(pod, namespace=namespace, config=config).inject
        case = f"namespace {namespace} labelled {ns_label}, pod labelled {pod_label}"
        assert injected == _expected(namespace, ns_label, pod_label, excluded), case
        # The selectors alone already keep excluded namespaces away from the webhook.
        if namespace in excluded:
            assert called == [], case
        checked += 1
    assert checked == len(namespaces) * 12


@pytest.mark.parametrize("enforce", [None, "privileged", "baseline", "restricted"])
def test_with_capture_each_pod_is_sent_once_and_enforcing_namespaces_to_their_own_path(
    enforce: str | None,
) -> None:
    r = rendered(["capture"])
    config = parse_config(config_of(r))
    assert config.capture.enabled
    mutating = r.one("MutatingWebhookConfiguration")["webhooks"]
    assert len(mutating) == 4
    enforced = enforce in ("baseline", "restricted")
    for ns_label, pod_label in itertools.product([None, "enabled"], [None, "true", "false"]):
        ns_labels = _namespace_labels("apps", ns_label)
        if enforce is not None:
            ns_labels["pod-security.kubernetes.io/enforce"] = enforce
        pod = _pod(pod_label)
        pod["spec"]["containers"][0]["ports"] = [{"containerPort": 8080}]
        called = [
            hook
            for hook in mutating
            if matches(hook["namespaceSelector"], ns_labels)
            and matches(hook["objectSelector"], pod["metadata"]["labels"])
        ]
        case = f"enforce {enforce}, namespace labelled {ns_label}, pod labelled {pod_label}"
        assert len(called) == int(_expected("apps", ns_label, pod_label, set())), case
        for hook in called:
            path = hook["clientConfig"]["service"]["path"]
            assert path == ("/mutate/pod-security-enforced" if enforced else "/mutate"), case
            decision = decide(pod, namespace="apps", config=config, pod_security_enforced=enforced)
            assert (decision.inject, decision.reason) == (
                (False, "capture-pod-security") if enforced else (True, "inject")
            ), case
    # Capture off: no Pod Security split, the two entries of before.
    assert len(rendered().one("MutatingWebhookConfiguration")["webhooks"]) == 2


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_guard_is_asked_only_about_what_it_guards(values: list[str]) -> None:
    # What each condition lets through is checked against the real API server in test_guard_apiserver.py.
    r = rendered(values)
    config = parse_config(config_of(r))
    [guard] = r.one("ValidatingWebhookConfiguration")["webhooks"]
    conditions = {c["name"]: c["expression"] for c in guard["matchConditions"]}
    assert set(conditions) == {"not-the-controller", "guarded-changes-only"}
    # The controller the guard lets through is the one the webhook config names.
    assert conditions["not-the-controller"] == (
        f"request.userInfo.username != '{config.controller_service_account}'"
    )
    guarded = conditions["guarded-changes-only"]
    for needle in [
        f"'{contract.ENV_SLOT}'",  # the pair is recognised by its env, not by the status annotation
        "oldObject.spec.containers",
        "oldObject.spec.initContainers",
        "k.startsWith('hotupgrade.io/')",
        *(f'"{key}"' for key in sorted(USER_ANNOTATIONS)),  # the user's requests never reach the webhook
    ]:
        assert needle in guarded, needle
    assert contract.ANNOTATION_STATUS not in guarded
    excluded = set(config.system_namespaces)
    for namespace in excluded:
        assert not matches(guard["namespaceSelector"], _namespace_labels(namespace, "enabled"))
    assert matches(guard["namespaceSelector"], _namespace_labels("apps", None))
    assert "objectSelector" not in guard  # pods opted in by namespace label carry no pod label


def test_cert_manager_injects_the_ca_from_the_serving_certificate() -> None:
    r = rendered(["cert-manager"])
    certificate = next(c for c in r.of_kind("Certificate") if not c["spec"].get("isCA"))
    ref = f"{NAMESPACE}/{certificate['metadata']['name']}"
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert r.one(kind)["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": ref}
    default = rendered()
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert "annotations" not in default.one(kind)["metadata"]


def test_the_selector_evaluator_follows_kubernetes_semantics() -> None:
    not_in: dict[str, Any] = {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]}]}
    assert matches(not_in, {}) and matches(not_in, {"a": "y"}) and not matches(not_in, {"a": "x"})
    selector: dict[str, Any] = {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}]}
    assert not matches(selector, {})
    selector = {
        "matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}],
        "matchLabels": {"b": "1"},
    }
    assert (
        matches(selector, {"a": "x", "b": "1"})
        and not matches(selector, {"a": "x"})
        and not matches(selector, {"b": "1"})
    )


def test_extra_namespace_selector_narrows_every_webhook() -> None:
    r = rendered(
        sets=[
            "admission.namespaceSelectorExpressions[0].key=team",
            "admission.namespaceSelectorExpressions[0].operator=In",
            "admission.namespaceSelectorExpressions[0].values={canary}",
        ]
    )
    hooks = [hook for _, hook in _webhooks(r)]
    assert len(hooks) == 3
    canary = {**_namespace_labels("apps", "enabled"), "team": "canary"}
    other = {**_namespace_labels("apps", "enabled"), "team": "payments"}
    pod_labels = _pod("true")["metadata"]["labels"]
    for hook in hooks:
        assert not matches(hook["namespaceSelector"], other)
    mutating = [h for h in hooks if h["clientConfig"]["service"]["path"] == "/mutate"]
    assert [
        h["name"]
        for h in mutating
        if matches(h["namespaceSelector"], canary) and matches(h["objectSelector"], pod_labels)
    ] == ["namespace.inject.hotupgrade.io"]
