"""Fixtures for the agent's proof: a real pod (network namespace, shared /dev/shm and run dir) per test."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from agent import contract
from podharness.pod import Pod
from podharness.sidecar import SidecarPod

# Short drains keep the suite fast; the parent-shutdown time is what an upgrade waits for.
DRAIN_SECONDS = 2
PARENT_SHUTDOWN_SECONDS = 3


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return report is None or report.failed


@pytest.fixture
def pod(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pod]:
    if os.geteuid() != 0:
        pytest.skip("the pod harness needs root: network namespaces, mount namespaces, bind mounts")
    created = Pod(tmp_path, run_dir_mount=contract.RUN_DIR, label=request.node.name[:50])
    try:
        created.create()
        yield created
    finally:
        if _failed(request):
            for name, container in created.containers.items():
                print(f"----- container {name} -----\n{container.logs()[-20000:]}")
        created.close()


@pytest.fixture
def sidecar_pod(pod: Pod) -> Iterator[SidecarPod]:
    """A fresh injected pod: app running, slot a serving at epoch 0, slot b empty."""
    sidecars = SidecarPod(pod, drain_seconds=DRAIN_SECONDS, parent_shutdown_seconds=PARENT_SHUTDOWN_SECONDS)
    sidecars.start_pod()
    yield sidecars
    print(f"----- state.json -----\n{sidecars.state()}")
