"""Self-signed mode: what a webhook configuration must hold, and the JSON patch that puts it back. Pure.

A GitOps tool re-applying the chart's manifests (Argo CD, Flux, `kubectl apply`) writes the
configurations as rendered: no `caBundle` (it is filled at run time) and whatever `failurePolicy` the
manifest says. Without a caBundle the API server cannot verify the webhook's certificate, so under
failurePolicy Fail every pod creation in an opted-in namespace is refused; a failurePolicy flipped to
Ignore silently admits pods without the pair. The certs loop (webhook.certs_k8s) watches both
configurations and applies this patch whenever they drift, as Istio's webhook patcher re-patches
caBundle on every change it sees. The failurePolicy to enforce is the webhook's own config, which the
chart renders from the same value as the configurations, so the two only differ when someone edited one.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Drift:
    """One field of one webhook that differs from what it must hold."""

    webhook: str
    field: str  # "caBundle" or "failurePolicy"
    found: str | None
    wanted: str

    def describe(self) -> str:
        found = "unset" if not self.found else ("another CA" if self.field == "caBundle" else self.found)
        wanted = "the CA" if self.field == "caBundle" else self.wanted
        return f"{self.webhook}.{self.field}: {found} -> {wanted}"


def drift(configuration: Mapping[str, Any], *, ca_bundle: str, failure_policy: str) -> list[Drift]:
    """What differs in `configuration` (raw JSON, camelCase) from the base64 `ca_bundle` and the policy."""
    found: list[Drift] = []
    for webhook in configuration.get("webhooks") or []:
        name = str(webhook.get("name", "?"))
        current = (webhook.get("clientConfig") or {}).get("caBundle")
        if current != ca_bundle:
            found.append(Drift(name, "caBundle", current, ca_bundle))
        policy = webhook.get("failurePolicy")
        if policy != failure_policy:
            found.append(Drift(name, "failurePolicy", policy, failure_policy))
    return found


def repair_patch(
    configuration: Mapping[str, Any], *, ca_bundle: str, failure_policy: str
) -> list[dict[str, Any]]:
    """A JSON patch setting every webhook's caBundle and failurePolicy, pinned to the configuration's
    resourceVersion by a `test` op (a concurrent writer makes it fail with 422, then re-read); [] when
    nothing differs."""
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") != ca_bundle:
            op = "replace" if "caBundle" in client_config else "add"
            ops.append({"op": op, "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle})
        if webhook.get("failurePolicy") != failure_policy:
            op = "replace" if "failurePolicy" in webhook else "add"
            ops.append({"op": op, "path": f"/webhooks/{index}/failurePolicy", "value": failure_policy})
    if not ops:
        return []
    version = (configuration.get("metadata") or {}).get("resourceVersion")
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]


def describe(drifts: Sequence[Drift]) -> str:
    """`a.caBundle: unset -> the CA; b.failurePolicy: Ignore -> Fail` for the repair's log event."""
    return "; ".join(d.describe() for d in drifts)
