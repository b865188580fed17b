"""Injection as a pure function, against golden files (REFRESH_GOLDEN=1 rewrites them).

An input names its pod inline (`pod`) or as a file under testdata/ (`podFile`: the issue's case files are
kept verbatim in testdata/cases/).
"""

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from webhook import contract
from webhook.config import WebhookConfig, parse_config
from webhook.inject import decide, inject, plan_injection
from webhook.injection_status import parse_status
from webhook.podsecurity import restricted_violations

TESTDATA = Path(__file__).parent / "testdata"
CASES = sorted(p.name.removesuffix(".input.yaml") for p in TESTDATA.glob("*.input.yaml"))
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"


def load_case(case: str) -> tuple[dict[str, Any], str, WebhookConfig]:
    data = yaml.safe_load((TESTDATA / f"{case}.input.yaml").read_text())
    pod = json.loads((TESTDATA / data["podFile"]).read_text()) if "podFile" in data else data["pod"]
    return pod, data["namespace"], parse_config(data.get("config"))


def render_golden(case: str) -> str:
    pod, namespace, config = load_case(case)
    decision, patch = plan_injection(pod, namespace=namespace, config=config)
    result = {
        "decision": decision.reason,
        "placement": decision.placement,
        "warning": decision.warning,
        "patch": patch,
        "pod": inject(pod, namespace=namespace, config=config),
    }
    return yaml.safe_dump(result, sort_keys=False, width=120)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str) -> None:
    golden = TESTDATA / f"{case}.golden.yaml"
    rendered = render_golden(case)
    if REFRESH:
        golden.write_text(rendered)
    assert golden.exists(), f"{golden.name} is missing: run with REFRESH_GOLDEN=1 and review the diff"
    assert rendered == golden.read_text(), (
        f"{case}: output differs from {golden.name} (REFRESH_GOLDEN=1 rewrites)"
    )


def test_no_unused_goldens() -> None:
    goldens = {p.name.removesuffix(".golden.yaml") for p in TESTDATA.glob("*.golden.yaml")}
    assert goldens - set(CASES) == set(), "golden files without an input case"
    assert len(CASES) >= 8


@pytest.mark.parametrize("case", CASES)
def test_inject_twice_changes_nothing(case: str) -> None:
    pod, namespace, config = load_case(case)
    once = inject(pod, namespace=namespace, config=config)
    assert inject(once, namespace=namespace, config=config) == once
    assert plan_injection(once, namespace=namespace, config=config)[1] == []


@pytest.mark.parametrize("case", CASES)
def test_patch_applied_to_the_original_gives_the_injected_pod(case: str) -> None:
    pod, namespace, config = load_case(case)
    original = copy.deepcopy(pod)
    _, patch = plan_injection(pod, namespace=namespace, config=config)
    assert pod == original, "plan_injection must not mutate its input"
    assert jsonpatch.apply_patch(pod, patch) == inject(pod, namespace=namespace, config=config)


def container_names(pod: dict[str, Any]) -> set[str]:
    return {c["name"] for key in ("containers", "initContainers") for c in pod["spec"].get(key) or []}


# What the capture init container breaks in `restricted`, by design (docs/bootstrap-modes.md): root with
# NET_ADMIN. Capture is opt-in and refused where Pod Security enforces baseline or restricted.
CAPTURE_VIOLATIONS = {
    ("capabilities_restricted", contract.CAPTURE_CONTAINER),
    ("runAsNonRoot", contract.CAPTURE_CONTAINER),
    ("runAsUser", contract.CAPTURE_CONTAINER),
}


@pytest.mark.parametrize("case", CASES)
def test_injection_never_breaks_pod_security_restricted(case: str) -> None:
    pod, namespace, config = load_case(case)
    injected = inject(pod, namespace=namespace, config=config)
    pair_names = container_names(injected) - container_names(pod) - {contract.CAPTURE_CONTAINER}
    # The pair passes `restricted` by itself, whatever the pod around it does ...
    assert [v for v in restricted_violations(injected) if pair_names & set(v.culprits)] == []
    # ... so a compliant pod stays compliant, and a non-compliant one gains no new violation but the
    # capture container's, when capture is on.
    before = {(v.check, culprit) for v in restricted_violations(pod) for culprit in v.culprits}
    after = {(v.check, culprit) for v in restricted_violations(injected) for culprit in v.culprits}
    captured = contract.CAPTURE_CONTAINER in container_names(injected)
    assert after - before == (CAPTURE_VIOLATIONS if captured else set())


def test_the_restricted_case_pod_stays_restricted_in_both_modes() -> None:
    for case in ("restricted-pod", "restricted-pod-native"):
        pod, namespace, config = load_case(case)
        assert restricted_violations(pod) == []
        injected = inject(pod, namespace=namespace, config=config)
        assert decide(pod, namespace=namespace, config=config).inject
        assert restricted_violations(injected) == [], case
    # The pair as it was injected before issue 10 (no seccompProfile) is what PodSecurity rejected.
    pod, namespace, config = load_case("restricted-pod")
    injected = inject(pod, namespace=namespace, config=config)
    for container in injected["spec"]["containers"][:2]:
        del container["securityContext"]["seccompProfile"]
    [violation] = restricted_violations(injected)
    assert (violation.check, violation.culprits) == (
        "seccompProfile_restricted",
        ("hotupgrade-a", "hotupgrade-b"),
    )


def test_a_port_the_app_declares_is_refused_with_the_setting_to_change() -> None:
    pod, namespace, config = load_case("app-port-clash")
    decision, patch = plan_injection(pod, namespace=namespace, config=config)
    assert (decision.inject, decision.reason, patch) == (False, "port-clash", [])
    assert "15002" in decision.warning and "ports.tcpListen" in decision.warning
    assert "'ledger'" in decision.warning
    moved, namespace, config = load_case("app-port-moved")
    assert decide(moved, namespace=namespace, config=config).inject


@pytest.mark.parametrize(
    ("port", "protocol", "clash"),
    [
        (15110, None, True),
        (15111, "TCP", True),
        (15101, "TCP", True),
        (15100, "TCP", True),
        (15110, "UDP", False),
        (15001, None, False),
        (8080, None, False),
    ],
)
def test_every_port_the_pair_binds_counts(port: int, protocol: str | None, clash: bool) -> None:
    pod = minimal()
    declared: dict[str, Any] = {"containerPort": port}
    if protocol is not None:
        declared["protocol"] = protocol
    pod["spec"]["initContainers"] = [{"name": "helper", "image": "h:1", "ports": [declared]}]
    decision = decide(pod, namespace="default", config=WebhookConfig())
    assert decision.reason == ("port-clash" if clash else "inject")


def test_a_known_coresident_proxy_is_refused_unless_the_ports_are_moved() -> None:
    pod, namespace, config = load_case("istio-injected")
    decision = decide(pod, namespace=namespace, config=config)
    assert (decision.inject, decision.reason) == (False, "coresident-proxy")
    assert "istio" in decision.warning and "15001 (ports.listen)" in decision.warning
    moved, namespace, config = load_case("istio-ports-moved")
    assert decide(moved, namespace=namespace, config=config).inject


@pytest.mark.parametrize(
    "evidence",
    [
        {"annotations": {"ambient.istio.io/redirection": "enabled"}, "ports": {"listen": 15001}},
        {"annotations": {"linkerd.io/proxy-version": "edge-25.1.1"}, "ports": {"admin": 4191}},
        {"container": "istio-proxy", "ports": {"tcpListen": 15090}},
        {"init": "linkerd-init", "ports": {"tcpListen": 4143}},
    ],
)
def test_known_proxies_are_recognised_by_container_or_annotation(evidence: dict[str, Any]) -> None:
    pod = minimal()
    pod["metadata"]["annotations"] = evidence.get("annotations", {})
    if "container" in evidence:
        pod["spec"]["containers"].append({"name": evidence["container"], "image": "proxy:1"})
    if "init" in evidence:
        pod["spec"]["initContainers"] = [{"name": evidence["init"], "image": "proxy:1"}]
    config = parse_config({"ports": evidence.get("ports", {})})
    assert decide(pod, namespace="default", config=config).reason == "coresident-proxy"


def test_a_job_pod_gets_native_sidecars_that_let_it_complete() -> None:
    pod, namespace, config = load_case("job-pod")
    assert config.mode == "containers"
    decision = decide(pod, namespace=namespace, config=config)
    assert (decision.inject, decision.placement, decision.warning) == (True, "nativeSidecar", "")
    spec = inject(pod, namespace=namespace, config=config)["spec"]
    assert [c["name"] for c in spec["containers"]] == ["report"]
    assert [(c["name"], c["restartPolicy"]) for c in spec["initContainers"]] == [
        ("hotupgrade-a", "Always"),
        ("hotupgrade-b", "Always"),
    ]
    on_failure, namespace, config = load_case("job-pod-on-failure")
    init = inject(on_failure, namespace=namespace, config=config)["spec"]["initContainers"]
    assert [c["name"] for c in init] == ["wait-db", "hotupgrade-a", "hotupgrade-b"]


def test_a_job_pod_is_skipped_with_a_warning_when_native_sidecars_are_off() -> None:
    pod, namespace, config = load_case("job-pod-skip")
    decision, patch = plan_injection(pod, namespace=namespace, config=config)
    assert (decision.inject, decision.reason, patch) == (False, "run-to-completion", [])
    assert "restartPolicy Never" in decision.warning
    # A long-running pod under the same config is injected as before.
    assert decide(minimal(), namespace="default", config=config).placement == "containers"


def test_warnings_are_single_short_lines() -> None:
    # The API server may truncate a warning over 256 characters (KEP-1693).
    pod = minimal()
    pod["spec"]["containers"].append(
        {
            "name": "sidecar-" + "x" * 50,
            "image": "x:1",
            "ports": [{"containerPort": p} for p in (contract.LISTEN_PORT, contract.TCP_LISTEN_PORT)],
        }
    )
    pod["spec"]["initContainers"] = [{"name": "istio-init", "image": "proxy:1"}]
    warnings = [decide(pod, namespace="default", config=WebhookConfig()).warning]
    warnings += [
        decide(*load_case(case)[:1], namespace="shop", config=load_case(case)[2]).warning for case in CASES
    ]
    for warning in filter(None, warnings):
        assert len(warning) <= 256 and "\n" not in warning, warning


def test_decisions_that_the_user_did_not_ask_for_carry_no_warning() -> None:
    for case in ("opted-out", "system-namespace", "host-network", "minimal"):
        pod, namespace, config = load_case(case)
        assert decide(pod, namespace=namespace, config=config).warning == "", case


def minimal() -> dict[str, Any]:
    pod, _, _ = load_case("minimal")
    return pod


def pair(pod: dict[str, Any], config: WebhookConfig) -> list[dict[str, Any]]:
    key = "initContainers" if config.mode == "nativeSidecar" else "containers"
    return [c for c in pod["spec"][key] if c["name"] in config.container_names]


@pytest.mark.parametrize("mode", ["containers", "nativeSidecar"])
def test_the_pair_differs_only_in_name_image_slot_and_status_port(mode: str) -> None:
    config = parse_config({"mode": mode})
    a, b = pair(inject(minimal(), namespace="default", config=config), config)
    assert (a["name"], a["image"]) == ("hotupgrade-a", config.sidecar_image)
    assert (b["name"], b["image"]) == ("hotupgrade-b", config.empty_image)
    env_a = {e["name"]: e for e in a["env"]}
    env_b = {e["name"]: e for e in b["env"]}
    assert env_a[contract.ENV_SLOT]["value"] == "a" and env_b[contract.ENV_SLOT]["value"] == "b"
    assert env_a[contract.ENV_STATUS_PORT]["value"] == str(contract.STATUS_PORT_A)
    assert env_b[contract.ENV_STATUS_PORT]["value"] == str(contract.STATUS_PORT_B)
    strip = {"name", "image", "env"}
    assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    varying = {contract.ENV_SLOT, contract.ENV_STATUS_PORT}
    assert {k: v for k, v in env_a.items() if k not in varying} == {
        k: v for k, v in env_b.items() if k not in varying
    }


def test_the_pair_follows_the_contract() -> None:
    config = WebhookConfig()
    for container in pair(inject(minimal(), namespace="default", config=config), config):
        assert "command" not in container and "args" not in container
        assert container["lifecycle"]["postStart"]["exec"]["command"] == list(contract.POST_START_COMMAND)
        assert container["securityContext"]["runAsUser"] == config.uid
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts == {contract.RUN_VOLUME: contract.RUN_DIR, contract.SHM_VOLUME: contract.SHM_DIR}
        env = {e["name"]: e for e in container["env"]}
        # Set only when envoyBinary is configured, in the xds bootstrap mode (test_bootstrap_modes.py), or
        # with skipHotRestartParentStats (test_skip_parent_stats.py); the capture init container's variable
        # is never the pair's (test_capture.py).
        optional = {
            contract.ENV_ENVOY_BINARY,
            contract.ENV_XDS_ADDRESS,
            contract.ENV_XDS_NODE_CLUSTER,
            contract.ENV_CAPTURE_REDIRECTS,
            contract.ENV_SKIP_HOT_RESTART_PARENT_STATS,
        }
        assert set(env) == {v for k, v in vars(contract).items() if k.startswith("ENV_")} - optional
        assert env[contract.ENV_POD_NAME]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env[contract.ENV_POD_NAMESPACE]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert env[contract.ENV_POD_IP]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env[contract.ENV_RUN_DIR]["value"] == contract.RUN_DIR
        assert env[contract.ENV_ADMIN_PORT]["value"] == str(contract.ADMIN_PORT)
        assert env[contract.ENV_BASE_ID]["value"] == str(contract.BASE_ID)


def test_volumes_are_a_run_dir_and_a_memory_backed_shm() -> None:
    volumes = inject(minimal(), namespace="default", config=WebhookConfig())["spec"]["volumes"]
    assert volumes == [
        {"name": contract.RUN_VOLUME, "emptyDir": {}},
        {"name": contract.SHM_VOLUME, "emptyDir": {"medium": "Memory"}},
    ]


def test_status_annotation_records_the_injection() -> None:
    config = parse_config({"sidecarImage": "s:1", "emptyImage": "e:1"})
    pod = inject(minimal(), namespace="default", config=config)
    status = parse_status(pod["metadata"]["annotations"][contract.ANNOTATION_STATUS])
    assert (status.active, status.standby) == ("hotupgrade-a", "hotupgrade-b")
    assert status.slots == {"hotupgrade-a": "a", "hotupgrade-b": "b"}
    assert (status.sidecar_image, status.empty_image) == ("s:1", "e:1")
    assert status.config_hash == config.injection_hash()
    assert status.config_hash != WebhookConfig().injection_hash()


def test_annotation_keys_are_escaped_in_the_patch() -> None:
    pod = minimal()
    pod["metadata"]["annotations"] = {"a~b/c": "x"}
    _, patch = plan_injection(pod, namespace="default", config=WebhookConfig())
    paths = [op["path"] for op in patch]
    assert "/metadata/annotations/hotupgrade.io~1status" in paths
    assert jsonpatch.apply_patch(pod, patch)["metadata"]["annotations"]["a~b/c"] == "x"


def test_patch_creates_missing_annotations_and_volumes() -> None:
    _, patch = plan_injection(minimal(), namespace="default", config=WebhookConfig())
    by_path = {op["path"]: op for op in patch}
    assert by_path["/metadata/annotations"]["op"] == "add"
    assert by_path["/spec/volumes"]["op"] == "add"
    assert by_path["/spec/containers/0"]["value"]["name"] == "hotupgrade-a"


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (
            lambda p: p["metadata"].setdefault("labels", {}).update({contract.LABEL_POD_INJECT: "false"}),
            "opted-out",
        ),
        (lambda p: p["spec"].update(hostNetwork=True), "host-network"),
        (
            lambda p: p["metadata"].setdefault("annotations", {}).update({contract.ANNOTATION_STATUS: "{}"}),
            "already-injected",
        ),
        (
            lambda p: p["spec"].update(volumes=[{"name": contract.SHM_VOLUME, "emptyDir": {}}]),
            "volume-name-taken",
        ),
        (lambda p: p["spec"].update(containers="nope"), "malformed-pod"),
        (lambda p: p.update(metadata=[]), "malformed-pod"),
        (lambda p: p["spec"].update(containers=[1]), "malformed-pod"),
    ],
)
def test_pods_that_are_not_injected(mutation: Any, reason: str) -> None:
    pod = minimal()
    mutation(pod)
    assert decide(pod, namespace="default", config=WebhookConfig()).reason == reason
    assert plan_injection(pod, namespace="default", config=WebhookConfig())[1] == []


def test_names_of_odd_types_do_not_break_the_decision() -> None:
    pod = minimal()
    pod["spec"]["containers"][0]["name"] = {"not": "hashable"}
    pod["spec"]["volumes"] = [{"name": ["x"]}]
    assert decide(pod, namespace="default", config=WebhookConfig()).inject


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease"])
def test_system_namespaces_are_never_injected(namespace: str) -> None:
    assert decide(minimal(), namespace=namespace, config=WebhookConfig()).reason == "system-namespace"


def test_a_pod_with_the_pod_label_is_injected_without_namespace_information() -> None:
    pod = minimal()
    pod["metadata"]["labels"] = {contract.LABEL_POD_INJECT: "true"}
    assert decide(pod, namespace="default", config=WebhookConfig()).inject
