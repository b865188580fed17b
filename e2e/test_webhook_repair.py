"""Issue 12, scenario 9 on a real cluster: the suite release's MutatingWebhookConfiguration is re-applied
as a GitOps tool would (no caBundle; then also failurePolicy Ignore). The in-cluster webhook (self-signed
mode, the chart's default) repairs it; meanwhile a client creates pods (server-side dry run, so nothing
runs) every 0.1 s in an opted-in namespace. Measured: how long the configuration stayed broken, and how
long pod creation was refused (caBundle gone, failurePolicy Fail) or admitted without the pair
(failurePolicy Ignore). Printed as one JSON line per case.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client

from clusterkit import kube, release
from e2e import conftest
from webhook import contract

# The repair takes about a second (a watch event and a few API calls); the API server applies a changed
# configuration within about a second too. Twenty seconds is a wide margin on a loaded 2-core machine,
# and the periodic check alone (checkIntervalSeconds, an hour by default) would miss it by far.
BOUND_SECONDS = 20.0
STABLE_ADMISSIONS = 10  # consecutive injected admissions after the repair that end a measurement


@dataclass
class Window:
    """What the probing client saw after the tampering, in seconds since it."""

    broken_until: float | None = None  # the configuration holds caBundle and failurePolicy again
    refused: list[float] = field(default_factory=list)
    uninjected: list[float] = field(default_factory=list)
    injected: list[float] = field(default_factory=list)
    settled: bool = False  # repaired, then STABLE_ADMISSIONS injected creations in a row

    def figures(self, case: str) -> dict[str, Any]:
        def span(times: list[float]) -> float:
            return round(times[-1] - times[0], 3) if times else 0.0

        return {
            "scenario": "webhook configuration tampered with (issue 12, 9)",
            "case": case,
            "config_repaired_s": None if self.broken_until is None else round(self.broken_until, 3),
            "refused_creations": len(self.refused),
            "refused_window_s": span(self.refused),
            "uninjected_creations": len(self.uninjected),
            "uninjected_window_s": span(self.uninjected),
            "injected_creations": len(self.injected),
            "last_bad_s": round(max([*self.refused, *self.uninjected], default=0.0), 3),
            "settled": self.settled,
            "bound_s": BOUND_SECONDS,
        }


def probe_pod(index: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"repair-probe-{index}", "labels": {"app": "repair-probe"}},
        "spec": {"containers": [{"name": "app", "image": conftest.DEMO_IMAGE}]},
    }


def create_dry_run(api: client.ApiClient, namespace: str, index: int) -> bool | None:
    """True: admitted with the pair; False: admitted without it; None: refused by the failing webhook."""
    try:
        created = kube.core(api).create_namespaced_pod(namespace, probe_pod(index), dry_run="All")
    except client.ApiException as exc:
        if exc.status == 500 and "failed calling webhook" in str(exc.body):
            return None
        raise
    return contract.ANNOTATION_STATUS in (created.metadata.annotations or {})


def intact(api: client.ApiClient, name: str, policy: str) -> bool:
    config = kube.admission(api).read_mutating_webhook_configuration(name)
    return all(h.client_config.ca_bundle and h.failure_policy == policy for h in config.webhooks)


def reapply_without_ca_bundle(api: client.ApiClient, name: str, *, failure_policy: str | None) -> None:
    admission = kube.admission(api)
    current: dict[str, Any] = api.sanitize_for_serialization(
        admission.read_mutating_webhook_configuration(name)
    )  # type: ignore[no-untyped-call]
    for hook in current["webhooks"]:
        hook["clientConfig"].pop("caBundle", None)
        if failure_policy is not None:
            hook["failurePolicy"] = failure_policy
    written = admission.replace_mutating_webhook_configuration(name, current)
    assert not any(h.client_config.ca_bundle for h in written.webhooks)


def measure(api: client.ApiClient, namespace: str, name: str, *, failure_policy: str | None) -> Window:
    """Tamper, then probe every 0.1 s until the configuration is intact and STABLE_ADMISSIONS creations
    in a row were injected (or BOUND_SECONDS * 3 passed)."""
    assert intact(api, name, "Fail")
    assert create_dry_run(api, namespace, 0) is True, "injection works before the tampering"
    reapply_without_ca_bundle(api, name, failure_policy=failure_policy)
    start = time.monotonic()
    window = Window()
    streak, index = 0, 0
    while time.monotonic() - start < BOUND_SECONDS * 3:
        index += 1
        result = create_dry_run(api, namespace, index)
        now = time.monotonic() - start
        if result is None:
            window.refused.append(now)
            streak = 0
        elif result is False:
            window.uninjected.append(now)
            streak = 0
        else:
            window.injected.append(now)
            streak += 1
        if window.broken_until is None and intact(api, name, "Fail"):
            window.broken_until = time.monotonic() - start
        if window.broken_until is not None and streak >= STABLE_ADMISSIONS:
            window.settled = True
            break
        time.sleep(0.1)
    return window


@pytest.mark.parametrize(("case", "failure_policy"), [("ca-bundle-wiped", None), ("also-ignore", "Ignore")])
def test_a_tampered_injector_configuration_is_repaired_and_injection_resumes(
    api: client.ApiClient,
    suite_release: release.Release,
    namespace: str,
    case: str,
    failure_policy: str | None,
) -> None:
    window = measure(api, namespace, suite_release.fullname, failure_policy=failure_policy)
    figures = window.figures(case)
    print(json.dumps(figures))
    assert window.broken_until is not None and window.broken_until < BOUND_SECONDS, figures
    assert figures["last_bad_s"] < BOUND_SECONDS, figures
    assert window.settled, figures
    if failure_policy is None:
        assert not window.uninjected, f"failurePolicy Fail never admits a pod without the pair: {figures}"
