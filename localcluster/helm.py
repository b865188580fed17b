"""Run the project's pinned helm binary on the chart and parse what it renders.

The binary is built by `make helm` (mk/chart.mk) into a cache keyed by version; `SIDECAR_HOTUPGRADE_HELM`
names it when make runs the tests, otherwise the path is derived from the version pinned in mk/chart.mk.
"""

import functools
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import settings

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "sidecar-hotupgrade"
CI_VALUES = CHART / "ci"
NAMESPACE = "hotupgrade-system"
RELEASE = "hu"
HELM_ENV = "SIDECAR_HOTUPGRADE_HELM"
HELM_TIMEOUT = 120.0

Manifest = dict[str, Any]


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def pinned_helm_path() -> Path:
    """Where `make helm` puts the binary: the env override, or the cache path for the pinned version."""
    override = os.environ.get(HELM_ENV)
    if override:
        return Path(override)
    makefile = (REPO / "mk" / "chart.mk").read_text()
    version = re.search(r"^HELM_VERSION \?= (\S+)$", makefile, re.MULTILINE)
    if version is None or "HELM_CACHE ?= $(SIDECAR_HOTUPGRADE_CACHE)/helm-$(HELM_VERSION)" not in makefile:
        raise AssertionError("mk/chart.mk no longer pins HELM_VERSION / HELM_CACHE as this module reads them")
    return settings.CACHE_DIR / f"helm-{version.group(1)}" / "bin" / "helm"


def run_helm(
    args: Sequence[str], *, check: bool = True, timeout: float = HELM_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run helm with an isolated home (no user repos/plugins) and return the finished process."""
    home = Path(os.environ.get("TMPDIR", "/tmp")) / "sidecar-hotupgrade-helm-home"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    for name in ("KUBECONFIG",):
        if name in os.environ:
            env[name] = os.environ[name]
    proc = subprocess.run(
        [str(pinned_helm_path()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if check and proc.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def values_file(name: str) -> Path:
    return CI_VALUES / f"{name}-values.yaml"


def ci_values_names() -> list[str]:
    """Every non-default values file shipped in the chart's ci/ folder (as chart-testing uses them)."""
    return sorted(p.name.removesuffix("-values.yaml") for p in CI_VALUES.glob("*-values.yaml"))


def template_args(
    values: Iterable[str] = (), sets: Iterable[str] = (), kube_version: str | None = None
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for name in values:
        args += ["--values", str(values_file(name))]
    for assignment in sets:
        args += ["--set", assignment]
    if kube_version is not None:
        args += ["--kube-version", kube_version]
    return args


@functools.cache
def _render(values: tuple[str, ...], sets: tuple[str, ...], kube_version: str | None) -> str:
    return run_helm(template_args(values, sets, kube_version)).stdout


def render(
    values: Sequence[str] = (), sets: Sequence[str] = (), kube_version: str | None = None
) -> list[Manifest]:
    """`helm template` with ci/<name>-values.yaml files and --set assignments; one dict per object."""
    text = _render(tuple(values), tuple(sets), kube_version)
    return [doc for doc in yaml.safe_load_all(text) if doc]


@dataclass(frozen=True)
class Rendered:
    """The objects of one rendering, with lookups by kind and name."""

    manifests: list[Manifest]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = [m for m in self.of_kind(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, found {[m['metadata']['name'] for m in found]}"
        )
        return found[0]

    def names(self, kind: str) -> set[str]:
        return {m["metadata"]["name"] for m in self.of_kind(kind)}

    def deployment(self, component: str) -> Manifest:
        found = [
            m
            for m in self.of_kind("Deployment")
            if m["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {component} Deployment"
        return found[0]


def rendered(
    values: Sequence[str] = (), sets: Sequence[str] = (), kube_version: str | None = None
) -> Rendered:
    return Rendered(render(values, sets, kube_version))


def config_of(r: Rendered) -> Mapping[str, Any]:
    """The webhook's config.yaml as the chart renders it into the ConfigMap."""
    cm = r.one("ConfigMap")
    loaded: Mapping[str, Any] = yaml.safe_load(cm["data"]["config.yaml"])
    return loaded
