"""The injection ConfigMap: the real webhook config parser accepts it, and it names the chart's objects."""

import dataclasses
import datetime
import json
from typing import Any

import pytest
import yaml
from cryptography import x509

from localcluster.helm import CHART, NAMESPACE, HelmError, ci_values_names, config_of, rendered, run_helm
from webhook.certs import plan
from webhook.config import ConfigError, WebhookConfig, parse_config

VALUE_SETS = [[], *[[name] for name in ci_values_names()]]
IDS = ["default", *ci_values_names()]


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_the_webhook_accepts_the_rendered_config(values: list[str]) -> None:
    r = rendered(values)
    config = parse_config(config_of(r))
    # The certificates section points at objects this very rendering creates.
    certs = config.certificates
    assert certs.service_name in r.names("Service")
    assert certs.service_namespace == certs.secret_namespace == NAMESPACE
    assert certs.mutating_webhook_configuration in r.names("MutatingWebhookConfiguration")
    assert certs.validating_webhook_configuration in r.names("ValidatingWebhookConfiguration")
    cert_manager = "cert-manager" in values[0] if values else False
    assert certs.mode == ("files" if cert_manager else "self-signed")
    if cert_manager:
        serving = [c for c in r.of_kind("Certificate") if c["spec"]["secretName"] == certs.secret_name]
        assert len(serving) == 1
    else:
        assert certs.secret_name in r.names("Secret")
    # The guard trusts exactly the controller's ServiceAccount.
    controller_sa = f"system:serviceaccount:{NAMESPACE}:"
    assert config.controller_service_account.startswith(controller_sa)
    if any(d["kind"] == "Deployment" and "controller" in d["metadata"]["name"] for d in r.manifests):
        sa = r.deployment("controller")["spec"]["template"]["spec"]["serviceAccountName"]
        assert config.controller_service_account == controller_sa + sa
    # The webhook refuses the same namespaces the selectors exclude, its own included.
    assert NAMESPACE in config.system_namespaces
    assert {"kube-system", "kube-public", "kube-node-lease"} <= set(config.system_namespaces)


def test_defaults_match_the_webhooks_own_defaults() -> None:
    # values.yaml restates the webhook's defaults so they are visible; they must not drift apart.
    # Only what the chart alone knows may differ: its namespace, its controller, its certificate objects.
    ours = parse_config(config_of(rendered()))
    builtin = WebhookConfig()
    chart_specific = {"system_namespaces", "controller_service_account", "certificates"}
    differing = {
        f.name for f in dataclasses.fields(WebhookConfig) if getattr(ours, f.name) != getattr(builtin, f.name)
    }
    assert differing == chart_specific


def test_injection_values_reach_the_config() -> None:
    config = parse_config(config_of(rendered(["native-sidecar"])))
    assert config.mode == "nativeSidecar"
    assert config.container_names == ("proxy-blue", "proxy-green")
    assert config.sidecar_image == "registry.example.com/mesh/sidecar:1.2.3"
    assert config.image_pull_policy == "Always"
    assert (config.drain_seconds, config.parent_shutdown_seconds, config.uid) == (20, 40, 2000)
    assert config.shm_size_limit == "16Mi"
    assert config.ports.upstream == 9000
    assert dict(config.env) == {"ENVOY_LOG_LEVEL": "debug"}
    assert "monitoring" in config.system_namespaces


def test_skip_hot_restart_parent_stats_reaches_the_config_off_by_default() -> None:
    assert parse_config(config_of(rendered())).skip_hot_restart_parent_stats is False
    on = parse_config(config_of(rendered(sets=["injection.skipHotRestartParentStats=true"])))
    assert on.skip_hot_restart_parent_stats is True


@pytest.mark.parametrize("mode", ["static", "xds", "custom"])
def test_each_bootstrap_mode_has_an_example_values_file_the_webhook_accepts(mode: str) -> None:
    config = parse_config(config_of(rendered([f"bootstrap-{mode}"])))
    assert config.bootstrap.mode == mode
    if mode == "xds":
        assert config.bootstrap.xds.address == "xds-control-plane.mesh-system.svc:18000"
        assert config.bootstrap.xds.cluster_label == "app.kubernetes.io/name"
        assert config.takeover_deadline_seconds == 45
    if mode == "custom":
        assert config.bootstrap.custom.config_map == "envoy-bootstrap"


def test_a_cross_field_rule_the_schema_cannot_express_fails_the_render_and_the_webhook() -> None:
    # parentShutdownSeconds must exceed drainSeconds: templates/_validate.tpl and the webhook both know it.
    sets = ["injection.drainSeconds=60", "injection.parentShutdownSeconds=30"]
    with pytest.raises(HelmError, match=r"injection\.parentShutdownSeconds \(30\) must exceed"):
        rendered(sets=sets)
    raw = {**config_of(rendered()), "drainSeconds": 60, "parentShutdownSeconds": 30}
    with pytest.raises(ConfigError, match="parentShutdownSeconds"):
        parse_config(raw)


class _Recorder(dict[str, Any]):
    """An empty config mapping that records every key the webhook's parser asks it for."""

    SECTIONS = (
        "ports",
        "resources",
        "certificates",
        "failurePolicy",
        "bootstrap",
        "bootstrap.xds",
        "bootstrap.custom",
        "capture",
    )

    def __init__(self, prefix: str, seen: set[str]) -> None:
        super().__init__()
        self.prefix = prefix
        self.seen = seen

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(self.prefix + key)
        if self.prefix + key in self.SECTIONS:
            return _Recorder(f"{self.prefix}{key}.", self.seen)
        return default


def _schema_keys(schema: dict[str, Any], prefix: str) -> set[str]:
    keys: set[str] = set()
    for key, sub in schema["properties"].items():
        if "properties" in sub and key not in ("resources", "securityContext"):
            keys |= _schema_keys(sub, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_chart_exposes_every_setting_the_webhook_reads() -> None:
    # When the webhook learns a new setting, this fails until values.yaml and the schema expose it.
    seen: set[str] = set()
    parse_config(_Recorder("", seen))
    read = {key for key in seen if key not in ("resources.requests", "resources.limits", *_Recorder.SECTIONS)}
    read.add("resources")
    schema = json.loads((CHART / "values.schema.json").read_text())
    exposed = _schema_keys(schema["properties"]["injection"], "")
    set_by_chart = {"systemNamespaces", "controllerServiceAccount", "maxRequestBytes"}
    set_by_chart |= {f"certificates.{key}" for key in config_of(rendered())["certificates"]}
    set_by_chart |= {f"failurePolicy.{key}" for key in config_of(rendered())["failurePolicy"]}
    assert read == exposed | set_by_chart


@pytest.mark.parametrize(
    ("release", "namespace"),
    [
        ("hotupgrade", "hotupgrade-system"),  # the README's install command
        ("hu-chart", "hotupgrade-chart-e2e"),  # e2e/test_chart.py
        ("sidecar-hotupgrade", "mesh"),  # release named like the chart: fullname is the release name
    ],
)
def test_self_signed_mode_can_issue_a_certificate_for_the_charts_names(release: str, namespace: str) -> None:
    # The webhook's own certificate planner, fed the certificates section the chart renders.
    text = run_helm(
        ["template", release, str(CHART), "--namespace", namespace, "--show-only", "templates/configmap.yaml"]
    )
    config = parse_config(yaml.safe_load(yaml.safe_load(text.stdout)["data"]["config.yaml"]))
    decided = plan(None, now=datetime.datetime.now(datetime.UTC), settings=config.certificates)
    assert decided.action != "keep"
    cert = x509.load_pem_x509_certificate(decided.bundle.serving.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    assert f"{config.certificates.service_name}.{namespace}.svc" in names
