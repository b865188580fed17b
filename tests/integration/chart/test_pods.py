"""Hardened pods: non-root, read-only root, no escalation, no capabilities, seccomp, requests and limits."""

from typing import Any

import pytest

from localcluster.helm import Rendered, ci_values_names, rendered

VALUE_SETS = [[], *[[name] for name in ci_values_names()]]
IDS = ["default", *ci_values_names()]
APP_VERSION_IMAGE = "sidecar-hotupgrade/webhook:0.1.0"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*(pod.get("initContainers") or []), *pod["containers"]]


def _pods(r: Rendered) -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in r.of_kind("Deployment")]


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_every_container_is_hardened(values: list[str]) -> None:
    r = rendered(values)
    pods = _pods(r)
    assert pods
    for pod in pods:
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        mounts_tmp_volume = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for c in _containers(pod):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["privileged"] is False, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
            assert "memory" in c["resources"]["limits"], c["name"]
            # A read-only root still needs a writable /tmp (gunicorn heartbeats, metrics files).
            tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and tmp[0]["name"] in mounts_tmp_volume, c["name"]
            assert c["image"] == APP_VERSION_IMAGE


def _mounts(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in container["volumeMounts"]}


def _release_cache_feeds_the_server(by_name: dict[str, dict[str, Any]]) -> None:
    """The releases container writes the snapshot the server reads (--releases), read-only for the server."""
    releases, server = by_name["releases"], by_name["webhook"]
    out = releases["args"][releases["args"].index("--out") + 1]
    assert releases["args"][0] == "releases"
    assert server["args"][server["args"].index("--releases") + 1] == out
    written, read = _mounts(releases)["releases"], _mounts(server)["releases"]
    assert out.startswith(written["mountPath"] + "/") and written["mountPath"] == read["mountPath"]
    assert read["readOnly"] is True and not written.get("readOnly")


def test_webhook_server_container_has_no_api_token() -> None:
    # Self-signed: only the certs and releases containers get credentials; the server that faces the
    # network has none (it reads the release cache's snapshot file instead).
    pod = rendered().deployment("webhook")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    token_volumes = {v["name"] for v in pod["volumes"] if "projected" in v}
    by_name = {c["name"]: c for c in _containers(pod)}
    assert set(by_name) == {"certs-init", "webhook", "releases", "certs"}
    assert not token_volumes & set(_mounts(by_name["webhook"]))
    for name in ("certs-init", "certs", "releases"):
        assert token_volumes & set(_mounts(by_name[name]))
    assert "--once" in by_name["certs-init"]["args"] and "--once" not in by_name["certs"]["args"]
    _release_cache_feeds_the_server(by_name)


def test_cert_manager_webhook_reads_the_secret_and_has_no_token() -> None:
    r = rendered(["cert-manager"])
    pod = r.deployment("webhook")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    by_name = {c["name"]: c for c in _containers(pod)}
    assert list(by_name) == ["webhook", "releases"]
    token_volumes = {v["name"] for v in pod["volumes"] if "projected" in v}
    assert set(_mounts(by_name["releases"])) & token_volumes
    assert not set(_mounts(by_name["webhook"])) & token_volumes
    _release_cache_feeds_the_server(by_name)
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    certificate = next(c for c in r.of_kind("Certificate") if "serving" in c["metadata"]["name"])
    assert tls["secret"]["secretName"] == certificate["spec"]["secretName"]


def test_webhook_serve_arguments_match_its_cli() -> None:
    from webhook.cli import _parser

    r = rendered()
    webhook = next(
        c for c in r.deployment("webhook")["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook"
    )
    assert webhook["command"] == ["hotupgrade-webhook"]
    args = _parser().parse_args(webhook["args"])
    assert args.command == "serve"
    assert args.bind == "0.0.0.0:9443"
    assert str(args.config) == "/etc/hotupgrade/config.yaml"
    tls_dir = next(m for m in webhook["volumeMounts"] if m["name"] == "tls")["mountPath"]
    assert str(args.tls_cert) == f"{tls_dir}/tls.crt" and str(args.tls_key) == f"{tls_dir}/tls.key"
    port = webhook["ports"][0]
    assert port["containerPort"] == 9443 and webhook["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    containers = r.deployment("webhook")["spec"]["template"]["spec"]["containers"]
    cache = _parser().parse_args(next(c for c in containers if c["name"] == "releases")["args"])
    assert cache.command == "releases" and cache.kubeconfig is None  # the pod's service account
    assert args.releases == cache.out


@pytest.mark.parametrize("values", [[], ["servicemonitor"]], ids=["default", "servicemonitor"])
def test_controller_arguments_match_its_cli(values: list[str]) -> None:
    from controller.main import build_parser, policy_from

    r = rendered(values)
    c = r.deployment("controller")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["hotupgrade-controller"]
    args = build_parser().parse_args(c["args"])
    policy_from(args)  # the allowlist regexes compile
    assert args.leader_elect is True
    assert args.lease_name == r.one("Lease")["metadata"]["name"]
    assert args.lease_namespace == r.one("Lease")["metadata"]["namespace"]
    assert args.identity == "$(POD_NAME)"
    assert any(e["name"] == "POD_NAME" for e in c["env"])
    assert args.metrics_port == c["ports"][0]["containerPort"]
    if values:
        assert args.prepull is True and args.namespace == ["team-a", "team-b"]
        assert args.allow_image_prefix == ["registry.example.com/mesh/sidecar:"]


def test_two_replicas_spread_and_protected_by_default() -> None:
    r = rendered()
    for component in ("webhook", "controller"):
        d = r.deployment(component)
        assert d["spec"]["replicas"] == 2
        terms = d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        assert (
            terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
            == d["spec"]["selector"]["matchLabels"]
        )
        pdb = next(
            p for p in r.of_kind("PodDisruptionBudget") if p["spec"]["selector"] == d["spec"]["selector"]
        )
        assert pdb["spec"]["minAvailable"] == 1
    assert r.deployment("webhook")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_hard_anti_affinity_is_required_and_needs_no_surge_node() -> None:
    r = rendered(["servicemonitor"])
    for component in ("webhook", "controller"):
        d = r.deployment(component)
        assert (
            "requiredDuringSchedulingIgnoredDuringExecution"
            in d["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
        )
        assert d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_single_replica_has_no_pdb_and_no_affinity() -> None:
    r = rendered(["single-replica"])
    assert r.of_kind("PodDisruptionBudget") == []
    for component in ("webhook", "controller"):
        d = r.deployment(component)
        assert d["spec"]["replicas"] == 1 and "affinity" not in d["spec"]["template"]["spec"]


def test_scrape_annotations_or_service_monitor() -> None:
    default = rendered()
    for component, scheme in (("webhook", "https"), ("controller", "http")):
        annotations = default.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/scheme"] == scheme
    assert default.of_kind("ServiceMonitor") == []
    monitored = rendered(["servicemonitor"])
    for component in ("webhook", "controller"):
        annotations = monitored.deployment(component)["spec"]["template"]["metadata"].get("annotations") or {}
        assert "prometheus.io/scrape" not in annotations
    monitored.one("ServiceMonitor")
