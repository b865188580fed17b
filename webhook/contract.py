"""The names this package shares with the other side; docs/contract.md is the source of truth.

Kept as a private copy on purpose: webhook/ and agent/ ship in different images and share no code.
tests/unit/test_contract.py fails when this copy drifts from docs/contract.md.
"""

from typing import Final, Literal, get_args

ENV_SLOT: Final = "HOTUPGRADE_SLOT"
ENV_RUN_DIR: Final = "HOTUPGRADE_RUN_DIR"
ENV_POD_NAME: Final = "HOTUPGRADE_POD_NAME"
ENV_POD_NAMESPACE: Final = "HOTUPGRADE_POD_NAMESPACE"
ENV_POD_IP: Final = "HOTUPGRADE_POD_IP"
ENV_STATUS_PORT: Final = "HOTUPGRADE_STATUS_PORT"
ENV_ADMIN_PORT: Final = "HOTUPGRADE_ADMIN_PORT"
ENV_BASE_ID: Final = "HOTUPGRADE_BASE_ID"
ENV_DRAIN_SECONDS: Final = "HOTUPGRADE_DRAIN_SECONDS"
ENV_PARENT_SHUTDOWN_SECONDS: Final = "HOTUPGRADE_PARENT_SHUTDOWN_SECONDS"
ENV_BOOTSTRAP_TEMPLATE: Final = "HOTUPGRADE_BOOTSTRAP_TEMPLATE"
ENV_UPSTREAM_PORT: Final = "HOTUPGRADE_UPSTREAM_PORT"
ENV_WAIT_TIMEOUT: Final = "HOTUPGRADE_WAIT_TIMEOUT"
ENV_LISTEN_PORT: Final = "HOTUPGRADE_LISTEN_PORT"
ENV_TCP_LISTEN_PORT: Final = "HOTUPGRADE_TCP_LISTEN_PORT"
ENV_TCP_UPSTREAM_PORT: Final = "HOTUPGRADE_TCP_UPSTREAM_PORT"
ENV_ENVOY_BINARY: Final = "HOTUPGRADE_ENVOY_BINARY"
ENV_BOOTSTRAP_MODE: Final = "HOTUPGRADE_BOOTSTRAP_MODE"
ENV_XDS_ADDRESS: Final = "HOTUPGRADE_XDS_ADDRESS"
ENV_XDS_NODE_CLUSTER: Final = "HOTUPGRADE_XDS_NODE_CLUSTER"
ENV_TAKEOVER_DEADLINE_SECONDS: Final = "HOTUPGRADE_TAKEOVER_DEADLINE_SECONDS"
ENV_SKIP_HOT_RESTART_PARENT_STATS: Final = "HOTUPGRADE_SKIP_HOT_RESTART_PARENT_STATS"

RUN_DIR: Final = "/var/run/hotupgrade"
SHM_DIR: Final = "/dev/shm"
# Every port the pair binds lies in one block, 15100-15119, that no well-known mesh uses: Istio reserves
# 15000-15090 (sidecar, ztunnel, iptables redirect), which other Envoy meshes copy (Kuma 15001/15006/15053,
# Open Service Mesh 15000-15010 and 15901-15904, App Mesh 15000/15001); Linkerd binds 4140-4191 and
# Consul 19000-21255. So a pod can carry another mesh's proxy beside the pair (webhook/portclash.py).
STATUS_PORT_A: Final = 15101
STATUS_PORT_B: Final = 15102
ADMIN_PORT: Final = 15100
BASE_ID: Final = 7
LISTEN_PORT: Final = 15110
TCP_LISTEN_PORT: Final = 15111
DRAIN_SECONDS: Final = 10
PARENT_SHUTDOWN_SECONDS: Final = 15
SHUTDOWN_MARGIN_SECONDS: Final = 1
WAIT_TIMEOUT: Final = 120
BOOTSTRAP_TEMPLATE: Final = "/etc/hotupgrade/envoy.yaml.tmpl"
STATE_FILE: Final = "state.json"
LOCK_FILE: Final = "state.lock"
STATS_BASE_FILE: Final = "envoy-stats-base.json"
LISTENERS_FILE: Final = "listeners.json"
FENCE_FILE: Final = "fence.json"
AGENT_BINARY: Final = "hotupgrade-agent"
SHM_VOLUME: Final = "hotupgrade-shm"
RUN_VOLUME: Final = "hotupgrade-run"
SCHEMA_VERSION: Final = "1.4"
BOOTSTRAP_MODE: Final = "static"
TAKEOVER_DEADLINE_SECONDS: Final = 60
BOOTSTRAP_VOLUME: Final = "hotupgrade-bootstrap"
BOOTSTRAP_CONFIG_DIR: Final = "/etc/hotupgrade/bootstrap"

LABEL_NAMESPACE_INJECTION: Final = "hotupgrade.io/injection"
LABEL_POD_INJECT: Final = "hotupgrade.io/inject"
ANNOTATION_STATUS: Final = "hotupgrade.io/status"
ANNOTATION_TARGET_IMAGE: Final = "hotupgrade.io/target-image"
ANNOTATION_UPGRADE: Final = "hotupgrade.io/upgrade"

POST_START_COMMAND: Final = (
    "/bin/sh",
    "-c",
    "command -v hotupgrade-agent >/dev/null 2>&1 || exit 0; exec hotupgrade-agent wait",
)

STATUS_FIELDS: Final = (
    "schemaVersion",
    "slot",
    "role",
    "phase",
    "epoch",
    "envoy_version",
    "hot_restart_version",
    "last_error",
    "listeners",
    "stall",
    "fence",
    "state",
)

# The agent's slots, phases and roles as types (docs/contract.md "Agent status"); the tuples are
# derived from them, so each value is written once per copy.
Slot = Literal["a", "b"]
AgentPhase = Literal["starting", "serving", "taking-over", "draining", "retired", "failed"]
AgentRole = Literal["active", "standby", "retired"]
PHASES: Final[tuple[AgentPhase, ...]] = get_args(AgentPhase)
ROLES: Final[tuple[AgentRole, ...]] = get_args(AgentRole)
SLOTS: Final[tuple[Slot, ...]] = get_args(Slot)
BootstrapMode = Literal["static", "xds", "custom"]
BOOTSTRAP_MODES: Final[tuple[BootstrapMode, ...]] = get_args(BootstrapMode)

# Transparent inbound capture (docs/contract.md "Traffic capture"): the init container the webhook adds
# runs `hotupgrade-agent capture` from the sidecar image with this one variable.
ENV_CAPTURE_REDIRECTS: Final = "HOTUPGRADE_CAPTURE_REDIRECTS"
CAPTURE_CONTAINER: Final = "hotupgrade-capture"
