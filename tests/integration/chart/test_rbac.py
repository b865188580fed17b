"""Least privilege: each ServiceAccount gets exactly the permissions its process uses, no wildcards."""

from collections.abc import Iterator
from typing import Any

import pytest

from localcluster.helm import NAMESPACE, Rendered, ci_values_names, rendered

# (scope, apiGroup, resource, verb, resourceNames or None); scope is "cluster" or the Role's namespace.
Permission = tuple[str, str, str, str, tuple[str, ...] | None]

VALUE_SETS = [[], *[[name] for name in ci_values_names()]]
IDS = ["default", *ci_values_names()]


def _rules(r: Rendered, kind: str, name: str, namespace: str | None) -> list[dict[str, Any]]:
    for role in r.of_kind(kind):
        if role["metadata"]["name"] == name and role["metadata"].get("namespace") == namespace:
            rules: list[dict[str, Any]] = role["rules"]
            return rules
    raise AssertionError(f"binding refers to a {kind} {name} that the chart does not create")


def permissions(r: Rendered, service_account: str) -> set[Permission]:
    """Every (scope, group, resource, verb, names) granted to the ServiceAccount by the chart's bindings."""
    granted: set[Permission] = set()
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for binding in r.of_kind(kind):
            subjects = binding.get("subjects") or []
            if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in subjects):
                continue
            assert all(s.get("namespace") == NAMESPACE for s in subjects)
            ref = binding["roleRef"]
            namespace = binding["metadata"].get("namespace")
            assert (ref["kind"] == "ClusterRole") == (kind == "ClusterRoleBinding"), (
                "no ClusterRole via RoleBinding"
            )
            scope = "cluster" if namespace is None else namespace
            for rule in _rules(r, ref["kind"], ref["name"], namespace):
                names = tuple(rule["resourceNames"]) if rule.get("resourceNames") else None
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            granted.add((scope, group, resource, verb, names))
    return granted


def _all_rules(r: Rendered) -> Iterator[dict[str, Any]]:
    for kind in ("ClusterRole", "Role"):
        for role in r.of_kind(kind):
            yield from role["rules"]


def _sa(r: Rendered, component: str) -> str:
    sa: str = r.deployment(component)["spec"]["template"]["spec"]["serviceAccountName"]
    return sa


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_no_wildcards_and_no_escalation_verbs(values: list[str]) -> None:
    r = rendered(values)
    for rule in _all_rules(r):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in (rule.get(field) or []), rule
        assert not rule.get("nonResourceURLs"), rule
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
        assert not {"clusterroles", "clusterrolebindings", "roles", "rolebindings"} & set(
            rule["resources"]
        ), rule


def test_controller_permissions_by_default() -> None:
    r = rendered()
    lease = r.one("Lease")["metadata"]["name"]
    assert permissions(r, _sa(r, "controller")) == {
        ("cluster", "", "pods", "get", None),
        ("cluster", "", "pods", "list", None),
        ("cluster", "", "pods", "watch", None),
        ("cluster", "", "pods", "patch", None),
        ("cluster", "", "pods", "create", None),  # pre-pull, on by default
        ("cluster", "", "pods", "delete", None),
        ("cluster", "", "nodes", "get", None),  # the kubelet's version (native sidecars need 1.32+)
        ("cluster", "policy", "poddisruptionbudgets", "list", None),  # the budget gate's cache
        ("cluster", "policy", "poddisruptionbudgets", "watch", None),
        ("cluster", "", "events", "create", None),
        ("cluster", "", "events", "list", None),  # the kubelet's, when a change looks ignored
        ("cluster", "hotupgrade.io", "sidecarreleases", "get", None),  # SidecarReleases (issue 14)
        ("cluster", "hotupgrade.io", "sidecarreleases", "list", None),
        ("cluster", "hotupgrade.io", "sidecarreleases", "watch", None),
        ("cluster", "hotupgrade.io", "sidecarreleases/status", "update", None),
        ("cluster", "", "namespaces", "list", None),  # their namespaceSelector
        ("cluster", "", "namespaces", "watch", None),
        (NAMESPACE, "coordination.k8s.io", "leases", "get", (lease,)),
        (NAMESPACE, "coordination.k8s.io", "leases", "update", (lease,)),
    }


def test_prepull_off_removes_only_pod_create_and_delete() -> None:
    base = permissions(rendered(), _sa(rendered(), "controller"))
    r = rendered(sets=["controller.prePull=false"])
    assert base - permissions(r, _sa(r, "controller")) == {
        ("cluster", "", "pods", "create", None),
        ("cluster", "", "pods", "delete", None),
    }
    assert permissions(r, _sa(r, "controller")) < base


# The release cache (`hotupgrade-webhook releases`) in every cert mode: read SidecarReleases and namespaces.
RELEASE_CACHE: set[Permission] = {
    ("cluster", group, resource, verb, None)
    for group, resource in (("hotupgrade.io", "sidecarreleases"), ("", "namespaces"))
    for verb in ("list", "watch")
}


def test_self_signed_webhook_may_touch_only_its_secret_and_its_webhook_configurations() -> None:
    r = rendered()
    secret = r.one("Secret")["metadata"]["name"]
    config_name = r.one("MutatingWebhookConfiguration")["metadata"]["name"]
    assert config_name == r.one("ValidatingWebhookConfiguration")["metadata"]["name"]
    assert permissions(r, _sa(r, "webhook")) == RELEASE_CACHE | {
        (NAMESPACE, "", "secrets", "get", (secret,)),
        (NAMESPACE, "", "secrets", "update", (secret,)),
        *(
            ("cluster", "admissionregistration.k8s.io", kind, verb, (config_name,))
            for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations")
            for verb in ("get", "list", "watch", "patch")
        ),
    }


@pytest.mark.parametrize("values", ["cert-manager", "cert-manager-issuer"])
def test_cert_manager_webhook_may_only_read_releases_and_namespaces(values: str) -> None:
    r = rendered([values])
    assert permissions(r, _sa(r, "webhook")) == RELEASE_CACHE


def test_no_controller_no_controller_rbac() -> None:
    r = rendered(["no-controller"])
    assert not [
        m
        for m in r.manifests
        if m["kind"] in ("ClusterRole", "Role") and "controller" in m["metadata"]["name"]
    ]
    assert r.of_kind("Lease") == []


def test_rbac_create_false_renders_no_rbac() -> None:
    r = rendered(sets=["rbac.create=false"])
    assert not [m for m in r.manifests if m["apiVersion"].startswith("rbac.authorization.k8s.io/")]


def test_the_permission_check_sees_a_wildcard() -> None:
    # A check that cannot fail is no check: a wildcard rule must show up in the computed grants.
    r = rendered()
    role = next(m for m in r.of_kind("ClusterRole") if "controller" in m["metadata"]["name"])
    role["rules"].append({"apiGroups": [""], "resources": ["*"], "verbs": ["*"]})
    assert ("cluster", "", "*", "*", None) in permissions(r, _sa(r, "controller"))
    role["rules"].pop()
