"""Agent version skew on the real cluster (issue 12, scenario 2): upgrades between the previous agent and
today's, both directions, under load, through the in-cluster controller.

`sidecar:prev` runs the agent as of be521ba, built from the repository's own history
(localcluster/imagebuilder/prevagent.py, PREV_AGENT_COMMIT) on demand by this module only
(e2e/previmage.py: pushed to the local cluster's registry, or loaded on kind); a checkout without that
commit fails here with the command to run, and nowhere else. Its state file and `/status` are schema 1.0
(no `schemaVersion`, no hold fields). Today's agent writes a newer minor (1.1 added the hold, 1.2
listener parity). docs/contract.md ("Schema versions", "Agent version skew") promises that a newer minor
only adds optional fields, which the older agent ignores and the newer one derives, so every direction
must be a plain hot upgrade: Completed, epoch + 1, 0 failed requests, the app never restarted. The pod
starts on today's agent (the webhook injects it), so the run is new -> old -> new -> old: old -> new ->
old under one load, after a first new -> old.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from clusterkit import images, kube, upgrade
from controller.record import Phase
from e2e import conftest, previmage
from e2e.test_upgrade import assert_tcp_only_cut_at_parent_exit, start_load
from localcluster.imagebuilder import prevagent
from webhook import contract

pytestmark = pytest.mark.timeout(1500)

# The schema each image's agent reports on /status ("schemaVersion"; absent means 1.0): the pinned agent's,
# and the working tree's (the contract's copy in webhook/, docs/contract.md).
PREV_SCHEMA, NEW_SCHEMA = "1.0", contract.SCHEMA_VERSION


@pytest.fixture(scope="module")
def prev_image() -> str:
    """`sidecar:prev` where the cluster pulls it from (built and delivered once per run, cached)."""
    try:
        return previmage.provide(images.local_registry())
    except prevagent.MissingCommitError as exc:  # not a skip: CI would go green without the skew run
        pytest.fail(str(exc), pytrace=False)


def reported_schema(agent: dict[str, object]) -> str:
    """The agent's /status schema version (docs/contract.md: a document without it is 1.0)."""
    return str(agent.get("schemaVersion", "1.0"))


def test_old_and_new_agents_take_over_from_each_other_under_load(
    api: client.ApiClient, namespace: str, prev_image: str
) -> None:
    schema_of = {prev_image: PREV_SCHEMA, **{image: NEW_SCHEMA for image in conftest.SIDECAR_IMAGES}}
    sequence = (prev_image, conftest.SIDECAR_IMAGES[1], prev_image)
    [pod] = conftest.deploy_and_wait(api, namespace, "skew")
    name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
    first = upgrade.status_of(pod)
    agent = upgrade.agent_status(ip, first.slots[first.active])
    assert agent is not None and reported_schema(agent) == NEW_SCHEMA, agent
    epoch = agent["epoch"]
    assert isinstance(epoch, int)
    load = start_load(pod)
    steps = []
    try:
        for target in sequence:
            before = upgrade.status_of(kube.get_pod(api, namespace, name))
            previous = upgrade.agent_status(ip, before.slots[before.active])
            assert previous is not None
            outcome = upgrade.upgrade(api, namespace, name, target, conftest.UPGRADE_TIMEOUT)
            assert outcome.phase == Phase.COMPLETED, (target, outcome.message)
            after = upgrade.status_of(outcome.pod)
            assert after.active == before.standby and after.standby == before.active
            assert kube.container_image(outcome.pod, after.active) == target
            assert kube.container_image(outcome.pod, after.standby) == conftest.EMPTY_IMAGE
            agent = upgrade.agent_status(ip, after.slots[after.active])
            assert agent is not None and agent["role"] == "active" and agent["phase"] == "serving", agent
            # The agent that took over is the one the image promises, and it took over from the other kind.
            assert reported_schema(agent) == schema_of[target], (target, agent)
            assert reported_schema(previous) != reported_schema(agent), (previous, agent)
            assert agent["epoch"] == epoch + 1, (epoch, agent)
            epoch = agent["epoch"]
            steps.append(
                {
                    "from": f"{before.sidecar_image} (schema {reported_schema(previous)})",
                    "to": f"{target} (schema {reported_schema(agent)})",
                    "epoch": epoch,
                    "not_ready_s": outcome.not_ready_s,
                    "requests_so_far": load.summary()["requests"],
                }
            )
    finally:
        summary = load.stop()
    figures = {
        k: summary[k]
        for k in ("requests", "failed", "tcp_echoes", "tcp_failed", "http1_connection_close", "p99_ms")
    }
    print("SKEW " + json.dumps({"steps": steps, "load": figures}))
    assert summary["failed"] == 0, summary["failures"]
    assert summary["requests"] > 100
    assert summary["tcp_echoes"] > 0
    assert_tcp_only_cut_at_parent_exit(load, upgrades=len(sequence))
    final = kube.get_pod(api, namespace, name)
    app_before, app_after = kube.container_status(pod, "app"), kube.container_status(final, "app")
    assert app_after["containerID"] == app_before["containerID"] and app_after["restartCount"] == 0
