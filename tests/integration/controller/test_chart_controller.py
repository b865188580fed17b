"""The chart's controller: pre-pull on by default (and a way off), and nativeSidecar mode refused on
Kubernetes older than 1.32, whose kubelets never restart a native sidecar on an image change."""

import pytest

from controller.main import build_parser, policy_from
from localcluster.helm import HelmError, pinned_helm_path, rendered

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def helm_binary() -> None:
    if not pinned_helm_path().is_file():
        pytest.fail(f"helm is not built at {pinned_helm_path()}: run `make helm`")


def controller_args(sets: list[str]) -> list[str]:
    spec = rendered(sets=sets).deployment("controller")["spec"]["template"]["spec"]
    args: list[str] = spec["containers"][0]["args"]
    return args


def test_pre_pull_is_on_by_default_and_can_be_turned_off() -> None:
    on = policy_from(build_parser().parse_args(controller_args([])))
    assert on.pre_pull is True and "--prepull" in controller_args([])
    off = policy_from(build_parser().parse_args(controller_args(["controller.prePull=false"])))
    assert off.pre_pull is False
    assert policy_from(build_parser().parse_args([])).pre_pull is True, "the command's own default too"


@pytest.mark.parametrize("kube_version", ["1.30.0", "1.31.9"])
def test_native_sidecar_upgrades_are_refused_before_kubernetes_1_32(kube_version: str) -> None:
    with pytest.raises(HelmError, match=r"needs Kubernetes 1\.32\+ .*kubernetes#126525"):
        rendered(["native-sidecar"], kube_version=kube_version)
    injected_only = rendered(["native-sidecar", "no-controller"], kube_version=kube_version)
    assert not [d for d in injected_only.of_kind("Deployment") if "controller" in d["metadata"]["name"]]


@pytest.mark.parametrize("kube_version", ["1.32.0", "1.34.4"])
def test_native_sidecar_upgrades_render_from_kubernetes_1_32(kube_version: str) -> None:
    r = rendered(["native-sidecar"], kube_version=kube_version)
    assert r.deployment("controller")
