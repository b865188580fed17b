"""The webhook config's `bootstrap` section (docs/bootstrap-modes.md) and what it injects into the pair.

Pure: `parse_bootstrap` reads the parsed YAML and raises ValueError naming the dotted field (webhook/config.py
turns it into a ConfigError); `bootstrap_env`, `bootstrap_volumes` and `bootstrap_mounts` are what
webhook/inject.py adds to both containers of the pair. The names come from docs/contract.md
("Bootstrap modes"): the agent reads them, this module only passes them on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook import contract
from webhook.contract import BootstrapMode

# host:port, where host is a DNS name, an IPv4 address or an IPv6 address in brackets (the agent parses it
# again, agent/bootstrap, and says what is wrong in /status; refusing here keeps it out of every pod).
XDS_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):([0-9]{1,5})$")
# A label key (apimachinery IsQualifiedName): optional DNS-subdomain prefix, then a name of up to 63.
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# ConfigMap names are DNS subdomains; keys are [-._a-zA-Z0-9]+ (IsConfigMapKey).
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True)
class XdsBootstrap:
    """`xds` mode: the control plane's ADS address and the pod label whose value is Envoy's node.cluster."""

    address: str | None = None
    cluster_label: str | None = None  # None: the agent uses the pod namespace


@dataclass(frozen=True)
class CustomBootstrap:
    """`custom` mode: a ConfigMap of the pod's namespace mounted into the pair (None: the image's template
    at `bootstrapTemplate`), and the key of the template in it."""

    config_map: str | None = None
    key: str = "envoy.yaml.tmpl"


@dataclass(frozen=True)
class Bootstrap:
    """Which bootstrap every injected pair renders (docs/contract.md "Bootstrap modes")."""

    mode: BootstrapMode = contract.BOOTSTRAP_MODE
    xds: XdsBootstrap = field(default_factory=XdsBootstrap)
    custom: CustomBootstrap = field(default_factory=CustomBootstrap)

    def template(self, image_template: str) -> str:
        """HOTUPGRADE_BOOTSTRAP_TEMPLATE: the mounted ConfigMap's key, else the path in the image."""
        if self.mode == "custom" and self.custom.config_map is not None:
            return f"{contract.BOOTSTRAP_CONFIG_DIR}/{self.custom.key}"
        return image_template

    def to_json(self) -> dict[str, Any]:
        """For the injection hash: every field that changes what is injected."""
        return {
            "mode": self.mode,
            "xds": {"address": self.xds.address, "clusterLabel": self.xds.cluster_label},
            "custom": {"configMap": self.custom.config_map, "key": self.custom.key},
        }


def _section(raw: object, name: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name}: must be a mapping, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in keys)
    if unknown:
        raise ValueError(f"{name}.{unknown[0]}: unknown field")
    return raw


def _optional(raw: Mapping[str, Any], key: str, name: str, pattern: re.Pattern[str]) -> str | None:
    """A string field where null and "" both mean unset (the chart's values write "")."""
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{name}.{key}: {value!r} is not valid (must match {pattern.pattern})")
    return value


def parse_bootstrap(raw: object) -> Bootstrap:
    """The `bootstrap` section; ValueError names the bad field, including the cross-field rules."""
    section = _section(raw, "bootstrap", ("mode", "xds", "custom"))
    raw_mode = section.get("mode") or contract.BOOTSTRAP_MODE
    mode = next((m for m in contract.BOOTSTRAP_MODES if m == raw_mode), None)
    if mode is None:
        modes = ", ".join(contract.BOOTSTRAP_MODES)
        raise ValueError(f"bootstrap.mode: must be one of {modes}, got {raw_mode!r}")
    xds_raw = _section(section.get("xds"), "bootstrap.xds", ("address", "clusterLabel"))
    address = _optional(xds_raw, "address", "bootstrap.xds", XDS_ADDRESS)
    if address is not None and not 1 <= int(address.rsplit(":", 1)[1]) <= 65535:
        raise ValueError(f"bootstrap.xds.address: {address!r}: the port must be 1..65535")
    xds = XdsBootstrap(
        address=address, cluster_label=_optional(xds_raw, "clusterLabel", "bootstrap.xds", LABEL_KEY)
    )
    custom_raw = _section(section.get("custom"), "bootstrap.custom", ("configMap", "key"))
    custom = CustomBootstrap(
        config_map=_optional(custom_raw, "configMap", "bootstrap.custom", DNS_SUBDOMAIN),
        key=_optional(custom_raw, "key", "bootstrap.custom", CONFIG_MAP_KEY) or CustomBootstrap.key,
    )
    if mode == "xds" and xds.address is None:
        raise ValueError(
            "bootstrap.xds.address: must be set when bootstrap.mode is xds (host:port of the ADS server)"
        )
    return Bootstrap(mode=mode, xds=xds, custom=custom)


def _field_env(name: str, field_path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


def bootstrap_env(bootstrap: Bootstrap, *, takeover_deadline_seconds: int) -> list[dict[str, Any]]:
    """The mode, the take-over deadline, and in `xds` mode the control plane and the node cluster label."""
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_BOOTSTRAP_MODE, "value": bootstrap.mode},
        {"name": contract.ENV_TAKEOVER_DEADLINE_SECONDS, "value": str(takeover_deadline_seconds)},
    ]
    if bootstrap.mode == "xds":
        assert bootstrap.xds.address is not None  # parse_bootstrap refuses xds without it
        env.append({"name": contract.ENV_XDS_ADDRESS, "value": bootstrap.xds.address})
        if bootstrap.xds.cluster_label is not None:
            # The downward API resolves a missing label to "": the agent then uses the namespace.
            label = bootstrap.xds.cluster_label
            env.append(_field_env(contract.ENV_XDS_NODE_CLUSTER, f"metadata.labels['{label}']"))
    return env


def bootstrap_volumes(bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """`custom` mode with a ConfigMap: the volume both containers mount; the template only, read-only."""
    if bootstrap.mode != "custom" or bootstrap.custom.config_map is None:
        return []
    config_map = {
        "name": bootstrap.custom.config_map,
        "items": [{"key": bootstrap.custom.key, "path": bootstrap.custom.key}],
    }
    return [{"name": contract.BOOTSTRAP_VOLUME, "configMap": config_map}]


def bootstrap_mounts(bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """The mount of `bootstrap_volumes` in each container of the pair."""
    if not bootstrap_volumes(bootstrap):
        return []
    return [{"name": contract.BOOTSTRAP_VOLUME, "mountPath": contract.BOOTSTRAP_CONFIG_DIR, "readOnly": True}]
