"""A real kube-apiserver, named by KUBECONFIG (default: the local cluster's admin kubeconfig).

Without one the tests skip, which CI counts as a failure. Every test gets its own namespace.
"""

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException
from prometheus_client import CollectorRegistry

from controller.agents import AgentClient
from controller.budgetcache import BudgetCache
from controller.kube import Kube
from controller.main import Controller
from controller.metrics import ControllerMetrics
from controller.policy import Policy
from controller.reconciler import Reconciler
from tests.integration.apiserver import reachable_kubeconfig
from tests.integration.controller.fakes import Background, KubeletSim
from webhook.kubeclient import load_api_client


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    return reachable_kubeconfig()


@pytest.fixture
def kube(kubeconfig: str) -> Kube:
    return Kube(load_api_client(kubeconfig))


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"hu-ctl-{secrets.token_hex(4)}"
    core: Any = kube.core  # raw dict bodies; the typed client wants models
    core.create_namespace({"metadata": {"name": name}}, _preload_content=False)
    # Pods are refused until the namespace has its default ServiceAccount; kube-controller-manager makes
    # it, but may not be running (or may be slow): create it, and let an AlreadyExists race pass.
    try:
        core.create_namespaced_service_account(
            name, {"metadata": {"name": "default"}}, _preload_content=False
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    yield name
    core.delete_namespace(name, _preload_content=False)


@pytest.fixture
def sim(kube: Kube, namespace: str) -> Iterator[KubeletSim]:
    simulator = KubeletSim(kube, namespace)
    yield simulator
    simulator.close()


def running_controller(kube: Kube, namespace: str, *, workers: int = 2, gate: bool = True) -> Controller:
    """The controller's threads (watch, queue, workers and, with `gate`, the PodDisruptionBudget caches),
    started."""
    metrics = ControllerMetrics(CollectorRegistry())
    # A stalled take-over must still be in flight when a CLI started after it acts; starting one took
    # 16 s on a loaded 2-core machine, so 20 s was a race the tests could lose.
    policy = Policy(step_timeout=120, drain_grace=10, poll_interval=0.2)
    budgets = BudgetCache(kube, namespaces=[namespace], watch_timeout=5) if gate else None
    reconciler = Reconciler(kube, AgentClient(timeout=2.0), policy, metrics=metrics, budgets=budgets)
    running = Controller(
        reconciler,
        kube,
        namespaces=[namespace],
        workers=workers,
        metrics=metrics,
        watch_timeout=5,
        budgets=budgets,
    )
    running.start()
    return running


@pytest.fixture
def controller(kube: Kube, namespace: str, sim: KubeletSim) -> Iterator[Controller]:
    """The controller (running_controller) plus the simulated kubelet, both running."""
    running = running_controller(kube, namespace)
    kubelet = Background(sim.sync_all)
    yield running
    kubelet.close()
    running.shut_down()
    assert kubelet.errors == []
