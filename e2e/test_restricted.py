"""Pod Security `restricted`, enforced by the API server: an injected compliant Deployment is admitted and
hot-upgraded under load without a failed request, and the pre-pull pod the controller creates for the
upgrade is admitted and runs there too."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from clusterkit import kube, upgrade
from controller.prepull import PRE_PULL_NAME_PREFIX
from controller.record import Phase
from e2e import conftest
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load, upgrade_once
from webhook.podsecurity import restricted_violations

pytestmark = pytest.mark.timeout(900)

ENFORCE = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def pod_events(api: client.ApiClient, namespace: str) -> list[dict[str, str]]:
    """Every Event about a pod in the namespace: {name, reason, message}."""
    resp = kube.core(api).list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Pod", _preload_content=False
    )
    return [
        {"name": e["involvedObject"]["name"], "reason": e.get("reason", ""), "message": e.get("message", "")}
        for e in json.loads(resp.data)["items"]
    ]


def test_restricted_namespace_admits_the_pair_and_the_pre_pull_pod_and_upgrades(
    api: client.ApiClient, namespace: str
) -> None:
    kube.core(api).patch_namespace(namespace, {"metadata": {"labels": ENFORCE}})
    # The namespace really enforces: the demo app without its securityContext is refused (dry run).
    plain = conftest.demo_deployment("plain")["spec"]["template"]
    with pytest.raises(client.ApiException) as refused:
        kube.core(api).create_namespaced_pod(
            namespace, {"metadata": {"generateName": "plain-"}, "spec": plain["spec"]}, dry_run="All"
        )
    assert refused.value.status == 403 and "violates PodSecurity" in str(refused.value.body), refused.value

    [pod] = conftest.deploy_and_wait(api, namespace, "restricted", restricted=True)
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    before = upgrade.status_of(pod)
    assert {c["name"] for c in pod["spec"]["containers"]} >= set(before.slots), "the pair is injected"
    assert restricted_violations(pod) == [], "the project's own reading of the profile agrees"
    load = start_load(pod)
    try:
        outcome, window = upgrade_once(api, namespace=namespace, name=name, image=conftest.SIDECAR_IMAGES[1])
    finally:
        summary = load.stop()
    pre_pull = [e for e in pod_events(api, namespace) if e["name"].startswith(PRE_PULL_NAME_PREFIX)]
    print(
        json.dumps(
            {
                "restricted": {
                    "phase": outcome.phase,
                    "message": outcome.message,
                    "not_ready_s": window.not_ready_s,
                    "requests": summary["requests"],
                    "failed": summary["failed"],
                    "tcp_echoes": summary["tcp_echoes"],
                    "tcp_failed": summary["tcp_failed"],
                    "pre_pull_events": sorted({e["reason"] for e in pre_pull}),
                }
            }
        )
    )
    assert outcome.phase == Phase.COMPLETED, outcome.message
    after = upgrade.status_of(outcome.pod)
    assert after.active == before.standby and after.sidecar_image == conftest.SIDECAR_IMAGES[1]
    agent = upgrade.agent_status(ip, after.slots[after.active])
    assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 50 and summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=1)
    # The pre-pull pod was admitted under `restricted` (it names its node, so no scheduler Event) and its
    # container started, as non-root: the kubelet refuses to start a runAsNonRoot container as root.
    reasons = {e["reason"] for e in pre_pull}
    assert {"Pulled", "Created", "Started"} <= reasons, pre_pull
    assert not any(e["reason"] in ("Failed", "FailedCreate") for e in pre_pull), pre_pull
