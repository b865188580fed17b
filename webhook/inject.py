"""Sidecar injection as a pure function: a pod in, the pod with the sidecar pair out, and the JSON patch.

No I/O, no clock, no environment. The HTTP shell (webhook.app) parses the AdmissionReview and calls
`plan_injection`.

Opt-in: a webhook cannot see namespace labels without an API call per admission, so the
MutatingWebhookConfiguration's selectors do the opt-in (namespace label `hotupgrade.io/injection=enabled`
with pod label `hotupgrade.io/inject` not `false`, or pod label `hotupgrade.io/inject=true` in any other
namespace). Whatever reaches /mutate is treated as opted in; this module still refuses what it can see
for itself: opt-out label, system namespaces, hostNetwork pods, already injected pods, name clashes,
port clashes (with the app or a known co-resident proxy), run-to-completion pods it cannot serve, and,
with capture on, pods it cannot capture (webhook/capture.py: ports Envoy does not forward, or a namespace
whose Pod Security level forbids the capture container, which the chart tells it by the path it calls).
A refusal is never a denial: the pod is admitted without the pair and the decision carries a warning
for the user (webhook/README.md, "Refusals").
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import contract, jsondiff, portclash
from webhook.bootstrap import bootstrap_env, bootstrap_mounts, bootstrap_volumes
from webhook.capture import CapturePlan, capture_container, plan_capture
from webhook.config import Mode, WebhookConfig
from webhook.injection_status import InjectionStatus

Pod = dict[str, Any]
JSONPatch = list[dict[str, Any]]

SLOTS = ("a", "b")


# A pod with one of these restart policies is expected to finish; regular sidecar containers never do.
RUN_TO_COMPLETION = ("Never", "OnFailure")


@dataclass(frozen=True)
class Decision:
    """Whether to inject, the reason (`inject`, or why not) for logs and metrics, and where the pair goes.

    `warning` is set when a pod that asked for the pair does not get it: the admission response carries
    it to the user (one line, no pod content beyond names and ports).
    """

    inject: bool
    reason: str
    warning: str = ""
    placement: Mode | None = None
    capture: CapturePlan = field(default_factory=CapturePlan)


# The API server may truncate a warning over 256 characters (KEP-1693): the advice goes first, details last.
MAX_WARNING = 256


def _refuse(reason: str, advice: str, detail: str) -> Decision:
    warning = f"hotupgrade: sidecar not injected ({reason}; {advice}): {detail}"
    if len(warning) > MAX_WARNING:
        warning = warning[: MAX_WARNING - 3] + "..."
    return Decision(False, reason, warning)


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _well_formed(pod: Mapping[str, Any]) -> bool:
    """The parts injection reads or writes have the types a real Pod has."""
    metadata = pod.get("metadata", {})
    spec = pod.get("spec")
    if not isinstance(metadata, Mapping) or not isinstance(spec, Mapping):
        return False
    for key in ("labels", "annotations"):
        section = metadata.get(key, {})
        if section is not None and not isinstance(section, Mapping):
            return False
    if not isinstance(spec.get("containers"), list):
        return False
    for key in ("initContainers", "volumes"):
        if spec.get(key) is not None and not isinstance(spec.get(key), list):
            return False
    items = [*spec["containers"], *(spec.get("initContainers") or []), *(spec.get("volumes") or [])]
    return all(isinstance(item, Mapping) for item in items)


def decide(
    pod: Mapping[str, Any], *, namespace: str, config: WebhookConfig, pod_security_enforced: bool = False
) -> Decision:
    """Decide whether this pod gets the sidecar pair (see the module docstring for opt-in).

    `pod_security_enforced`: the namespace enforces Pod Security baseline or restricted (only capture
    cares: its init container needs NET_ADMIN).
    """
    if not _well_formed(pod):
        return Decision(False, "malformed-pod")
    metadata = pod.get("metadata", {})
    spec = pod["spec"]
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    if spec.get("hostNetwork") is True:
        return Decision(False, "host-network")
    if namespace in config.system_namespaces:
        return Decision(False, "system-namespace")
    if labels.get(contract.LABEL_POD_INJECT) == "false":
        return Decision(False, "opted-out")
    if contract.ANNOTATION_STATUS in annotations:
        return Decision(False, "already-injected")
    taken = [c.get("name") for c in [*spec["containers"], *(spec.get("initContainers") or [])]]
    ours = [*config.container_names, *([contract.CAPTURE_CONTAINER] if config.capture.enabled else [])]
    if any(name in taken for name in ours):
        return Decision(False, "container-name-taken")
    volumes = [v.get("name") for v in spec.get("volumes") or []]
    if any(v["name"] in volumes for v in injected_volumes(config)):
        return Decision(False, "volume-name-taken")
    decision = _decide_ports_and_placement(pod, config)
    if not decision.inject or not config.capture.enabled:
        return decision
    capture = plan_capture(
        pod,
        config.capture,
        namespace=namespace,
        targets=config.ports.envoy_targets(),
        pair_ports=config.ports.bound(),
        pod_security_enforced=pod_security_enforced,
    )
    if capture.refusal is not None:
        # No pair without its capture: the user turned capture on so that Services need no change, and a
        # pair that no traffic reaches would only look protected.
        return _refuse(*capture.refusal)
    return Decision(True, "inject", placement=decision.placement, capture=capture)


def placement(pod: Mapping[str, Any], config: WebhookConfig) -> Mode | None:
    """Where the pair goes in this pod: `containers`, `nativeSidecar`, or None (cannot serve it)."""
    if config.mode == "nativeSidecar":
        return "nativeSidecar"
    spec = _mapping(pod.get("spec")) or {}
    if spec.get("restartPolicy") not in RUN_TO_COMPLETION:
        return "containers"
    # Regular containers that never exit keep a Job's pod running forever; native sidecars are stopped by
    # the kubelet once the regular containers have finished (SidecarContainers: beta and on by default
    # since Kubernetes 1.29, GA in 1.33; the chart requires 1.30).
    return "nativeSidecar" if config.run_to_completion == "nativeSidecar" else None


def _decide_ports_and_placement(pod: Mapping[str, Any], config: WebhookConfig) -> Decision:
    declared, proxies = portclash.clashes(pod, config)
    if declared:
        owners = dict.fromkeys(c.owner for c in declared)
        return _refuse(
            "port-clash",
            "move the app's port or injection.ports, or label the pod hotupgrade.io/inject=false",
            "; ".join(
                f"{owner} declares {', '.join(c.describe() for c in declared if c.owner == owner)}"
                for owner in owners
            )
            + ", which the pair binds",
        )
    if proxies:
        first = proxies[0]
        return _refuse(
            "coresident-proxy",
            f"move injection.ports out of {first.owner_ports}",
            f"{first.owner} binds {first.owner_ports}, including {', '.join(c.describe() for c in proxies)}",
        )
    where = placement(pod, config)
    if where is None:
        restart_policy = (_mapping(pod.get("spec")) or {}).get("restartPolicy")
        return _refuse(
            "run-to-completion",
            "set runToCompletion: nativeSidecar where native sidecars are available",
            f"restartPolicy {restart_policy}: the pair never exits, so the pod would never complete",
        )
    return Decision(True, "inject", placement=where)


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def sidecar_env(slot: str, config: WebhookConfig) -> list[dict[str, Any]]:
    """The contract's environment for one slot, then the configured extra variables."""
    values = [
        (contract.ENV_SLOT, slot),
        (contract.ENV_RUN_DIR, contract.RUN_DIR),
        (contract.ENV_STATUS_PORT, str(config.ports.status_port(slot))),
        (contract.ENV_ADMIN_PORT, str(config.ports.admin)),
        (contract.ENV_BASE_ID, str(config.base_id)),
        (contract.ENV_DRAIN_SECONDS, str(config.drain_seconds)),
        (contract.ENV_PARENT_SHUTDOWN_SECONDS, str(config.parent_shutdown_seconds)),
        (contract.ENV_BOOTSTRAP_TEMPLATE, config.bootstrap.template(config.bootstrap_template)),
        (contract.ENV_UPSTREAM_PORT, str(config.ports.upstream)),
        (contract.ENV_LISTEN_PORT, str(config.ports.listen)),
        (contract.ENV_TCP_LISTEN_PORT, str(config.ports.tcp_listen)),
        (contract.ENV_TCP_UPSTREAM_PORT, str(config.ports.effective_tcp_upstream())),
        (contract.ENV_WAIT_TIMEOUT, str(config.wait_timeout_seconds)),
    ]
    if config.envoy_binary is not None:
        values.append((contract.ENV_ENVOY_BINARY, config.envoy_binary))
    if config.skip_hot_restart_parent_stats:
        values.append((contract.ENV_SKIP_HOT_RESTART_PARENT_STATS, "true"))
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in values]
    env += bootstrap_env(config.bootstrap, takeover_deadline_seconds=config.takeover_deadline_seconds)
    env += [
        _field_env(contract.ENV_POD_NAME, "metadata.name"),
        _field_env(contract.ENV_POD_NAMESPACE, "metadata.namespace"),
        _field_env(contract.ENV_POD_IP, "status.podIP"),
    ]
    env += [{"name": name, "value": value} for name, value in config.env]
    return env


def sidecar_container(
    *, name: str, slot: str, image: str, config: WebhookConfig, native: bool
) -> dict[str, Any]:
    """One container of the pair; the two differ only in name, slot (env) and image."""
    container: dict[str, Any] = {"name": name, "image": image}
    if config.image_pull_policy is not None:
        container["imagePullPolicy"] = config.image_pull_policy
    # No command/args: each image's entrypoint decides (contract, "Images and hooks").
    container["env"] = sidecar_env(slot, config)
    container["resources"] = config.resources.to_json()
    # The same uid in both containers: Envoy's hot restart needs it for the shm segment and sockets.
    container["securityContext"] = config.security_context.to_json(config.uid)
    container["volumeMounts"] = [
        {"name": contract.RUN_VOLUME, "mountPath": contract.RUN_DIR},
        {"name": contract.SHM_VOLUME, "mountPath": contract.SHM_DIR},
        *bootstrap_mounts(config.bootstrap),
    ]
    container["lifecycle"] = {"postStart": {"exec": {"command": list(contract.POST_START_COMMAND)}}}
    if native:
        container["restartPolicy"] = "Always"
    return container


def injected_volumes(config: WebhookConfig) -> list[dict[str, Any]]:
    """The shared run dir and the memory-backed /dev/shm both containers mount."""
    shm: dict[str, Any] = {"medium": "Memory"}
    if config.shm_size_limit is not None:
        shm["sizeLimit"] = config.shm_size_limit
    return [
        {"name": contract.RUN_VOLUME, "emptyDir": {}},
        {"name": contract.SHM_VOLUME, "emptyDir": shm},
        *bootstrap_volumes(config.bootstrap),
    ]


def injection_status(config: WebhookConfig) -> InjectionStatus:
    """The status annotation of a freshly injected pod: slot a is active and runs the sidecar image."""
    active, standby = config.container_names
    return InjectionStatus(
        active=active,
        standby=standby,
        slots={active: "a", standby: "b"},
        sidecar_image=config.sidecar_image,
        empty_image=config.empty_image,
        config_hash=config.injection_hash(),
    )


def inject(
    pod: Mapping[str, Any], *, namespace: str, config: WebhookConfig, pod_security_enforced: bool = False
) -> Pod:
    """Return a copy of `pod` with the pair injected, or an unchanged copy when `decide` says no."""
    # A JSON round trip is a faster deep copy than copy.deepcopy for plain JSON data.
    mutated: Pod = json.loads(json.dumps(pod))
    decision = decide(pod, namespace=namespace, config=config, pod_security_enforced=pod_security_enforced)
    if not decision.inject:
        return mutated
    native = decision.placement == "nativeSidecar"
    pair = [
        sidecar_container(name=name, slot=slot, image=image, config=config, native=native)
        for name, slot, image in zip(
            config.container_names, SLOTS, (config.sidecar_image, config.empty_image), strict=True
        )
    ]
    spec = mutated["spec"]
    key = "initContainers" if native else "containers"
    existing = spec.get(key) or []
    # Containers start in order and a postStart hook blocks the next one: first means the app waits.
    spec[key] = [*pair, *existing] if config.hold_application_until_proxy_starts else [*existing, *pair]
    if decision.capture.redirects:
        # First of all init containers: the rules are in place before any container, the pair included,
        # starts, and they live in the pod's network namespace, so image swaps never touch them.
        capture = capture_container(
            decision.capture.redirects,
            image=config.sidecar_image,
            pull_policy=config.image_pull_policy,
            resources=config.resources.to_json(),
        )
        spec["initContainers"] = [capture, *(spec.get("initContainers") or [])]
    spec["volumes"] = [*(spec.get("volumes") or []), *injected_volumes(config)]
    metadata = mutated.setdefault("metadata", {})
    annotations = metadata.get("annotations") or {}
    annotations[contract.ANNOTATION_STATUS] = injection_status(config).render()
    metadata["annotations"] = annotations
    return mutated


def plan_injection(
    pod: Mapping[str, Any], *, namespace: str, config: WebhookConfig, pod_security_enforced: bool = False
) -> tuple[Decision, JSONPatch]:
    """The decision and the JSON patch (a diff of the injected copy against the original)."""
    decision = decide(pod, namespace=namespace, config=config, pod_security_enforced=pod_security_enforced)
    if not decision.inject:
        return decision, []
    injected = inject(pod, namespace=namespace, config=config, pod_security_enforced=pod_security_enforced)
    return decision, jsondiff.diff(pod, injected)
