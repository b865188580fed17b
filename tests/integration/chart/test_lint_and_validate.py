"""`helm lint --strict` and strict schema validation of everything the chart renders."""

import copy
from typing import Any

import kubernetes_validate
import pytest

from localcluster.helm import (
    CHART,
    HelmError,
    ci_values_names,
    render,
    run_helm,
    values_file,
)

# Custom resources: kubernetes-validate ships only the built-in APIs' schemas. These are checked
# field by field in test_certificates_and_monitoring.py instead; nothing else may be skipped.
CUSTOM_RESOURCES = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
LATEST = kubernetes_validate.latest_version()
VALUE_SETS = [[], *[[name] for name in ci_values_names()]]
IDS = ["default", *ci_values_names()]


def test_ci_values_files_exist() -> None:
    # The non-default renderings promised: cert-manager, native sidecars, one replica, ServiceMonitor.
    assert {"cert-manager", "native-sidecar", "single-replica", "servicemonitor"} <= set(ci_values_names())


@pytest.mark.timeout(300)
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_lint_strict(values: list[str]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for name in values:
        args += ["--values", str(values_file(name))]
    proc = run_helm(args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def _validate_all(manifests: list[dict[str, Any]], version: str) -> list[str]:
    validated = []
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_RESOURCES:
            continue
        kubernetes_validate.validate(manifest, version, strict=True)
        validated.append(manifest["kind"])
    return validated


@pytest.mark.timeout(300)
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_every_manifest_passes_strict_validation_for_newest_kubernetes(values: list[str]) -> None:
    manifests = render(values)
    validated = _validate_all(manifests, LATEST)
    assert "Deployment" in validated and "MutatingWebhookConfiguration" in validated
    skipped = {(m["apiVersion"], m["kind"]) for m in manifests} - {
        (m["apiVersion"], m["kind"]) for m in manifests if m["kind"] in validated
    }
    assert skipped <= CUSTOM_RESOURCES


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kube_version", ["1.30.0", "1.34.4"])
def test_renders_and_validates_for_older_supported_kubernetes(kube_version: str) -> None:
    # 1.30 is the chart's floor (matchConditions GA); 1.34 is the local e2e cluster's version. Upgrading
    # native sidecars needs 1.32 (tests/integration/controller/test_chart_controller.py).
    for values in VALUE_SETS:
        old_native = values == ["native-sidecar"] and kube_version < "1.32"
        manifests = render([*values, "no-controller"] if old_native else values, kube_version=kube_version)
        assert _validate_all(manifests, kube_version)


def test_refuses_kubernetes_older_than_its_floor() -> None:
    with pytest.raises(HelmError, match="incompatible with Kubernetes"):
        render(kube_version="1.29.9")


def test_strict_validation_would_catch_an_unknown_field() -> None:
    # The validator above is only worth something if it rejects what the API server would.
    deployment = next(m for m in render() if m["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, LATEST, strict=True)
