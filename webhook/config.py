"""The webhook's configuration: a YAML file (a mounted ConfigMap) parsed into frozen dataclasses.

Every field has a default, so the webhook runs with no file at all. Validation names the bad field
(`ports.admin: must be an integer in 1..65535`). Pure: `parse_config` takes the parsed YAML, `load_config`
only reads the file.
"""

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from webhook import contract
from webhook.bootstrap import Bootstrap, parse_bootstrap
from webhook.capture import Capture, check_capture, envoy_targets, parse_capture
from webhook.podfields import (
    QUANTITY,
    RESOURCE_NAME,
    Profile,
    SecurityContext,
    check_resources,
    check_security_context,
    quantity_value,
)

Mode = Literal["containers", "nativeSidecar"]
RunToCompletion = Literal["nativeSidecar", "skip"]
CertificateMode = Literal["files", "self-signed"]
PullPolicy = Literal["Always", "IfNotPresent", "Never"]
FailurePolicy = Literal["Fail", "Ignore"]
Endpoint = Literal["mutate", "validate"]

# RFC 1123 label, the rule for container names.
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Resource names (cpu, example.com/gpu) and object names (may contain dots).
DNS_LABEL_OR_RESOURCE = re.compile(r"^([a-z0-9.-]+/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
SERVICE_ACCOUNT_USER = re.compile(r"^system:serviceaccount:[a-z0-9.-]+:[a-z0-9.-]+$")
# The old Envoy must outlive the end of its drain by at least this much, or the requests it is still
# serving when the drain ends are cut (issue 10: 1 s drain + 1 s parent shutdown lost 28-38 requests
# per 3 upgrades, 1 s + 2 s lost none). Size it to the longest request: see webhook/README.md.
MIN_SHUTDOWN_MARGIN_SECONDS = 1


class ConfigError(ValueError):
    """The configuration is invalid; the message starts with the dotted name of the bad field."""


@dataclass(frozen=True)
class Resources:
    """Requests and limits of each sidecar container, as Kubernetes quantities."""

    requests: tuple[tuple[str, str], ...] = (("cpu", "50m"), ("memory", "64Mi"))
    limits: tuple[tuple[str, str], ...] = (("memory", "256Mi"),)

    def to_json(self) -> dict[str, dict[str, str]]:
        rendered: dict[str, dict[str, str]] = {}
        if self.requests:
            rendered["requests"] = dict(self.requests)
        if self.limits:
            rendered["limits"] = dict(self.limits)
        return rendered


@dataclass(frozen=True)
class Ports:
    """Ports the pair uses inside the pod's network namespace."""

    status_a: int = contract.STATUS_PORT_A
    status_b: int = contract.STATUS_PORT_B
    admin: int = contract.ADMIN_PORT
    listen: int = contract.LISTEN_PORT
    tcp_listen: int = contract.TCP_LISTEN_PORT
    upstream: int = 8080
    tcp_upstream: int | None = None  # None: the agent forwards TCP to `upstream`

    def effective_tcp_upstream(self) -> int:
        return self.upstream if self.tcp_upstream is None else self.tcp_upstream

    def status_port(self, slot: str) -> int:
        return self.status_a if slot == "a" else self.status_b

    def envoy_targets(self) -> dict[int, int]:
        """App port -> the static bootstrap's listener that forwards to it (capture's redirect targets)."""
        return envoy_targets(
            upstream=self.upstream,
            listen=self.listen,
            tcp_upstream=self.effective_tcp_upstream(),
            tcp_listen=self.tcp_listen,
        )

    def bound(self) -> frozenset[int]:
        """Every port the pair binds."""
        return frozenset({self.status_a, self.status_b, self.admin, self.listen, self.tcp_listen})


@dataclass(frozen=True)
class Certificates:
    """How the webhook gets its serving certificate: from files, or self-signed and stored in a Secret."""

    mode: CertificateMode = "files"
    secret_name: str = "hotupgrade-webhook-tls"
    secret_namespace: str = "hotupgrade-system"
    service_name: str = "hotupgrade-webhook"
    service_namespace: str = "hotupgrade-system"
    mutating_webhook_configuration: str = "hotupgrade-sidecar-injector"
    validating_webhook_configuration: str = "hotupgrade-sidecar-guard"
    validity_days: int = 365
    ca_validity_days: int = 3650
    renew_before_days: int = 30
    check_interval_seconds: int = 3600


@dataclass(frozen=True)
class FailurePolicies:
    """Each webhook configuration's failurePolicy (the chart renders both from the same values).

    An internal error answers as the API server would had the call failed: Ignore admits, Fail refuses.
    """

    mutate: FailurePolicy = "Fail"
    validate: FailurePolicy = "Fail"

    def of(self, endpoint: Endpoint) -> FailurePolicy:
        return self.mutate if endpoint == "mutate" else self.validate


@dataclass(frozen=True)
class WebhookConfig:
    """Everything that shapes an injection, plus the guard's and the server's settings."""

    sidecar_image: str = "sidecar-hotupgrade/sidecar:0.1.0"
    empty_image: str = "sidecar-hotupgrade/empty:0.1.0"
    image_pull_policy: PullPolicy | None = None
    container_names: tuple[str, str] = ("hotupgrade-a", "hotupgrade-b")
    mode: Mode = "containers"
    hold_application_until_proxy_starts: bool = True
    uid: int = 1337
    security_context: SecurityContext = field(default_factory=SecurityContext)
    # Pods with restartPolicy Never/OnFailure in `containers` mode (see webhook/README.md).
    run_to_completion: RunToCompletion = "nativeSidecar"
    resources: Resources = field(default_factory=Resources)
    drain_seconds: int = contract.DRAIN_SECONDS
    parent_shutdown_seconds: int = contract.PARENT_SHUTDOWN_SECONDS
    wait_timeout_seconds: int = contract.WAIT_TIMEOUT
    envoy_binary: str | None = None
    base_id: int = contract.BASE_ID
    bootstrap_template: str = contract.BOOTSTRAP_TEMPLATE
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    takeover_deadline_seconds: int = contract.TAKEOVER_DEADLINE_SECONDS
    capture: Capture = field(default_factory=Capture)
    # Envoy's --skip-hot-restart-parent-stats in every pair (docs/contract.md "A stalled child").
    skip_hot_restart_parent_stats: bool = False
    shm_size_limit: str | None = None
    ports: Ports = field(default_factory=Ports)
    env: tuple[tuple[str, str], ...] = ()
    system_namespaces: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")
    controller_service_account: str = "system:serviceaccount:hotupgrade-system:hotupgrade-controller"
    # An UPDATE review carries two pods, each up to etcd's default 1.5 MiB request limit.
    max_request_bytes: int = 8 * 1024 * 1024
    certificates: Certificates = field(default_factory=Certificates)
    failure_policy: FailurePolicies = field(default_factory=FailurePolicies)

    def injection_hash(self) -> str:
        """A short hash of every field that changes what gets injected (recorded in the status)."""
        shaping = {
            "sidecarImage": self.sidecar_image,
            "emptyImage": self.empty_image,
            "imagePullPolicy": self.image_pull_policy,
            "containerNames": list(self.container_names),
            "mode": self.mode,
            "hold": self.hold_application_until_proxy_starts,
            "uid": self.uid,
            "securityContext": asdict(self.security_context),
            "runToCompletion": self.run_to_completion,
            "resources": self.resources.to_json(),
            "drainSeconds": self.drain_seconds,
            "parentShutdownSeconds": self.parent_shutdown_seconds,
            "waitTimeoutSeconds": self.wait_timeout_seconds,
            "baseId": self.base_id,
            "bootstrapTemplate": self.bootstrap_template,
            "bootstrap": self.bootstrap.to_json(),
            "takeoverDeadlineSeconds": self.takeover_deadline_seconds,
            "shmSizeLimit": self.shm_size_limit,
            "ports": [
                self.ports.status_a,
                self.ports.status_b,
                self.ports.admin,
                self.ports.listen,
                self.ports.tcp_listen,
                self.ports.upstream,
                self.ports.tcp_upstream,
            ],
            "envoyBinary": self.envoy_binary,
            "env": [list(pair) for pair in self.env],
        }
        if self.capture.enabled:  # only then: pods injected before capture existed keep their hash
            shaping["capture"] = self.capture.to_json()
        if self.skip_hot_restart_parent_stats:
            # Only when set: pods injected before the setting existed keep their hash.
            shaping["skipHotRestartParentStats"] = True
        digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()
        return digest[:16]


T = TypeVar("T")


class _Fields:
    """Reads typed fields out of one YAML mapping, rejecting unknown keys; errors carry the dotted path."""

    def __init__(self, raw: object, prefix: str) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{prefix or 'config'}: must be a mapping, got {type(raw).__name__}")
        self.raw: Mapping[Any, Any] = raw
        self.prefix = prefix
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str, default: T) -> object | T:
        self.seen.add(key)
        value = self.raw.get(key, default)
        return default if value is None else value

    def string(self, key: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.name(key)}: must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise ConfigError(f"{self.name(key)}: {value!r} does not match {pattern.pattern}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.get(key, None)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.name(key)}: must be a non-empty string or null")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(f"{self.name(key)}: must be an integer in {low}..{high}, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.name(key)}: must be true or false, got {value!r}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, default)
        if value not in choices:
            raise ConfigError(f"{self.name(key)}: must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    def done(self) -> None:
        unknown = sorted(str(key) for key in self.raw if key not in self.seen)
        if unknown:
            raise ConfigError(f"{self.name(unknown[0])}: unknown field")


def _string_map(
    raw: object, name: str, key_pattern: re.Pattern[str], value_pattern: re.Pattern[str] | None
) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: must be a mapping")
    pairs: list[tuple[str, str]] = []
    for key, value in raw.items():
        if not isinstance(key, str) or not key_pattern.match(key):
            raise ConfigError(f"{name}.{key}: invalid name")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{name}.{key}: must be a string or a number")
        text = str(value)
        if value_pattern is not None and not value_pattern.match(text):
            raise ConfigError(f"{name}.{key}: {text!r} is not a Kubernetes quantity")
        pairs.append((key, text))
    return tuple(sorted(pairs))


def _parse_resources(raw: object) -> Resources:
    if raw is None:
        return Resources()
    fields = _Fields(raw, "resources")
    requests = _string_map(fields.get("requests", {}), "resources.requests", RESOURCE_NAME, QUANTITY)
    limits = _string_map(fields.get("limits", {}), "resources.limits", RESOURCE_NAME, QUANTITY)
    fields.done()
    try:
        check_resources(requests, limits)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Resources(requests=requests, limits=limits)


def _parse_ports(raw: object) -> Ports:
    fields = _Fields(raw, "ports")
    defaults = Ports()
    ports = Ports(
        status_a=fields.integer("statusA", defaults.status_a, 1, 65535),
        status_b=fields.integer("statusB", defaults.status_b, 1, 65535),
        admin=fields.integer("admin", defaults.admin, 1, 65535),
        listen=fields.integer("listen", defaults.listen, 1, 65535),
        tcp_listen=fields.integer("tcpListen", defaults.tcp_listen, 1, 65535),
        upstream=fields.integer("upstream", defaults.upstream, 1, 65535),
        tcp_upstream=None
        if fields.get("tcpUpstream", None) is None
        else fields.integer("tcpUpstream", 0, 1, 65535),
    )
    fields.done()
    # Every port the pair binds must be distinct, and the app's ports must not be one of them.
    bound = {
        "statusA": ports.status_a,
        "statusB": ports.status_b,
        "admin": ports.admin,
        "listen": ports.listen,
        "tcpListen": ports.tcp_listen,
    }
    seen: dict[int, str] = {}
    for key, port in bound.items():
        if port in seen:
            raise ConfigError(f"ports.{key}: {port} is already used by ports.{seen[port]}")
        seen[port] = key
    for key, app_port in (("upstream", ports.upstream), ("tcpUpstream", ports.tcp_upstream)):
        if app_port in seen:
            raise ConfigError(f"ports.{key}: {app_port} is already used by ports.{seen[app_port]}")
    return ports


# The pair's securityContext, field by field as the API server reads it (validation.go
# validateSeccompProfileField, ValidateAppArmorProfileField, ValidateProcMountType); the cross-field and
# Pod Security rules are webhook.podfields.check_security_context.
PROFILE_TYPES = ("RuntimeDefault", "Localhost", "Unconfined")
CAPABILITY = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SE_LINUX_KEYS = ("user", "role", "type", "level")


def _parse_profile(raw: object, name: str, default: Profile | None) -> Profile | None:
    if raw is None:
        return default
    fields = _Fields(raw, name)
    kind = fields.choice("type", "", PROFILE_TYPES)
    localhost = fields.optional_string("localhostProfile")
    fields.done()
    if kind == "Localhost" and localhost is None:
        raise ConfigError(f"{name}.localhostProfile: must be set when type is Localhost")
    if kind != "Localhost" and localhost is not None:
        raise ConfigError(f"{name}.localhostProfile: can only be set when type is Localhost")
    return Profile(kind, localhost)


def _capabilities(raw: object, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    if not isinstance(raw, list) or not all(isinstance(c, str) and CAPABILITY.match(c) for c in raw):
        raise ConfigError(f"{name}: must be a list of capability names (e.g. NET_BIND_SERVICE)")
    return tuple(raw)


def _optional_boolean(fields: _Fields, key: str) -> bool | None:
    value = fields.get(key, None)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{fields.name(key)}: must be true or false, got {value!r}")
    return value


def _parse_security_context(raw: object) -> SecurityContext:
    fields = _Fields(raw, "securityContext")
    d = SecurityContext()
    if fields.get("runAsUser", None) is not None:
        raise ConfigError("securityContext.runAsUser: set `uid` instead (both containers must share it)")
    capabilities = _Fields(fields.get("capabilities", None), "securityContext.capabilities")
    add = _capabilities(capabilities.get("add", None), "securityContext.capabilities.add", d.capabilities_add)
    drop = _capabilities(
        capabilities.get("drop", None), "securityContext.capabilities.drop", d.capabilities_drop
    )
    capabilities.done()
    se_linux = fields.get("seLinuxOptions", {})
    if not isinstance(se_linux, Mapping) or not all(
        key in SE_LINUX_KEYS and isinstance(value, str) for key, value in se_linux.items()
    ):
        raise ConfigError(f"securityContext.seLinuxOptions: must map {', '.join(SE_LINUX_KEYS)} to strings")
    run_as_group = fields.get("runAsGroup", None)
    if run_as_group is not None:
        run_as_group = fields.integer("runAsGroup", 0, 0, 2**31 - 1)
    proc_mount = fields.get("procMount", None)
    if proc_mount is not None:
        proc_mount = fields.choice("procMount", "", ("Default", "Unmasked"))
    seccomp = _parse_profile(fields.get("seccompProfile", None), "securityContext.seccompProfile", None)
    context = SecurityContext(
        run_as_group=run_as_group,
        run_as_non_root=fields.boolean("runAsNonRoot", d.run_as_non_root),
        allow_privilege_escalation=fields.boolean("allowPrivilegeEscalation", d.allow_privilege_escalation),
        privileged=_optional_boolean(fields, "privileged"),
        read_only_root_filesystem=_optional_boolean(fields, "readOnlyRootFilesystem"),
        capabilities_add=add,
        capabilities_drop=drop,
        seccomp_profile=d.seccomp_profile if seccomp is None else seccomp,
        app_armor_profile=_parse_profile(
            fields.get("appArmorProfile", None), "securityContext.appArmorProfile", None
        ),
        proc_mount=proc_mount,
        se_linux_options=tuple(sorted((str(k), str(v)) for k, v in se_linux.items())),
    )
    fields.done()
    return context


def _parse_certificates(raw: object) -> Certificates:
    fields = _Fields(raw, "certificates")
    d = Certificates()
    certificates = Certificates(
        mode=fields.choice("mode", d.mode, ("files", "self-signed")),  # type: ignore[arg-type]
        secret_name=fields.string("secretName", d.secret_name, DNS_LABEL_OR_RESOURCE),
        secret_namespace=fields.string("secretNamespace", d.secret_namespace, DNS_LABEL),
        service_name=fields.string("serviceName", d.service_name, DNS_LABEL),
        service_namespace=fields.string("serviceNamespace", d.service_namespace, DNS_LABEL),
        mutating_webhook_configuration=fields.string(
            "mutatingWebhookConfiguration", d.mutating_webhook_configuration, DNS_LABEL_OR_RESOURCE
        ),
        validating_webhook_configuration=fields.string(
            "validatingWebhookConfiguration", d.validating_webhook_configuration, DNS_LABEL_OR_RESOURCE
        ),
        validity_days=fields.integer("validityDays", d.validity_days, 2, 3650),
        ca_validity_days=fields.integer("caValidityDays", d.ca_validity_days, 2, 36500),
        renew_before_days=fields.integer("renewBeforeDays", d.renew_before_days, 1, 3649),
        check_interval_seconds=fields.integer("checkIntervalSeconds", d.check_interval_seconds, 1, 86400),
    )
    fields.done()
    if certificates.renew_before_days >= certificates.validity_days:
        raise ConfigError("certificates.renewBeforeDays: must be less than certificates.validityDays")
    if certificates.ca_validity_days < certificates.validity_days:
        raise ConfigError("certificates.caValidityDays: must be at least certificates.validityDays")
    return certificates


def _parse_bootstrap(raw: object) -> Bootstrap:
    try:
        return parse_bootstrap(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _parse_capture(raw: object) -> Capture:
    try:
        return parse_capture(raw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _parse_failure_policy(raw: object) -> FailurePolicies:
    fields = _Fields(raw, "failurePolicy")
    d = FailurePolicies()
    policies = FailurePolicies(
        mutate=fields.choice("mutate", d.mutate, ("Fail", "Ignore")),  # type: ignore[arg-type]
        validate=fields.choice("validate", d.validate, ("Fail", "Ignore")),  # type: ignore[arg-type]
    )
    fields.done()
    return policies


def parse_config(raw: object) -> WebhookConfig:
    """Build a validated config from parsed YAML (None or {} gives the defaults)."""
    fields = _Fields(raw, "")
    d = WebhookConfig()
    names = fields.get("containerNames", list(d.container_names))
    if not isinstance(names, list) or len(names) != 2:
        raise ConfigError("containerNames: must be a list of two container names [slot a, slot b]")
    for index, name in enumerate(names):
        if not isinstance(name, str) or not DNS_LABEL.match(name):
            raise ConfigError(f"containerNames[{index}]: {name!r} is not a valid container name")
    if names[0] == names[1]:
        raise ConfigError("containerNames: the two names must differ")
    env = _string_map(fields.get("env", {}), "env", ENV_NAME, None)
    for key, _ in env:
        if key.startswith("HOTUPGRADE_"):
            raise ConfigError(f"env.{key}: HOTUPGRADE_* variables are set by the webhook")
    system_namespaces = fields.get("systemNamespaces", list(d.system_namespaces))
    if not isinstance(system_namespaces, list) or not all(isinstance(n, str) for n in system_namespaces):
        raise ConfigError("systemNamespaces: must be a list of namespace names")
    config = WebhookConfig(
        sidecar_image=fields.string("sidecarImage", d.sidecar_image),
        empty_image=fields.string("emptyImage", d.empty_image),
        image_pull_policy=fields.choice(  # type: ignore[arg-type]
            "imagePullPolicy", "", ("", "Always", "IfNotPresent", "Never")
        )
        or None,
        container_names=(names[0], names[1]),
        mode=fields.choice("mode", d.mode, ("containers", "nativeSidecar")),  # type: ignore[arg-type]
        hold_application_until_proxy_starts=fields.boolean(
            "holdApplicationUntilProxyStarts", d.hold_application_until_proxy_starts
        ),
        uid=fields.integer("uid", d.uid, 1, 2**31 - 1),
        security_context=_parse_security_context(fields.get("securityContext", None)),
        run_to_completion=fields.choice(  # type: ignore[arg-type]
            "runToCompletion", d.run_to_completion, ("nativeSidecar", "skip")
        ),
        resources=_parse_resources(fields.get("resources", None)),
        drain_seconds=fields.integer("drainSeconds", d.drain_seconds, 1, 86400),
        parent_shutdown_seconds=fields.integer("parentShutdownSeconds", d.parent_shutdown_seconds, 1, 86400),
        wait_timeout_seconds=fields.integer("waitTimeoutSeconds", d.wait_timeout_seconds, 1, 3600),
        envoy_binary=fields.optional_string("envoyBinary"),
        base_id=fields.integer("baseId", d.base_id, 0, 2**31 - 1),
        bootstrap_template=fields.string("bootstrapTemplate", d.bootstrap_template),
        bootstrap=_parse_bootstrap(fields.get("bootstrap", None)),
        takeover_deadline_seconds=fields.integer(
            "takeoverDeadlineSeconds", d.takeover_deadline_seconds, 1, 3600
        ),
        capture=_parse_capture(fields.get("capture", None)),
        skip_hot_restart_parent_stats=fields.boolean(
            "skipHotRestartParentStats", d.skip_hot_restart_parent_stats
        ),
        shm_size_limit=fields.optional_string("shmSizeLimit"),
        ports=_parse_ports(fields.get("ports", None)),
        env=env,
        system_namespaces=tuple(system_namespaces),
        controller_service_account=fields.string(
            "controllerServiceAccount", d.controller_service_account, SERVICE_ACCOUNT_USER
        ),
        max_request_bytes=fields.integer("maxRequestBytes", d.max_request_bytes, 1024, 64 * 1024 * 1024),
        certificates=_parse_certificates(fields.get("certificates", None)),
        failure_policy=_parse_failure_policy(fields.get("failurePolicy", None)),
    )
    fields.done()
    check_injected_fields(config)
    return config


def check_injected_fields(config: WebhookConfig) -> None:
    """Cross-field rules on what lands in every pod: refuse here what would break each injected pod."""
    margin = config.parent_shutdown_seconds - config.drain_seconds
    if margin < MIN_SHUTDOWN_MARGIN_SECONDS:
        raise ConfigError(
            f"parentShutdownSeconds: {config.parent_shutdown_seconds} must exceed drainSeconds "
            f"({config.drain_seconds}) by at least {MIN_SHUTDOWN_MARGIN_SECONDS} s: the old Envoy is "
            "terminated parentShutdownSeconds after its drain starts, so requests still in flight at the end "
            "of the drain would be cut; use drainSeconds + the longest request + slack"
        )
    if config.takeover_deadline_seconds >= config.wait_timeout_seconds:
        raise ConfigError(
            f"takeoverDeadlineSeconds: {config.takeover_deadline_seconds} must be less than "
            f"waitTimeoutSeconds ({config.wait_timeout_seconds}): the postStart hook must see the failed "
            "take-over, not time out"
        )
    if config.shm_size_limit is not None:
        try:
            size = quantity_value(config.shm_size_limit)
        except ValueError:
            message = f"shmSizeLimit: {config.shm_size_limit!r} is not a Kubernetes quantity"
            raise ConfigError(message) from None
        if size < 0:
            raise ConfigError("shmSizeLimit: must not be negative")
    for key, image in (("sidecarImage", config.sidecar_image), ("emptyImage", config.empty_image)):
        if image != image.strip():
            raise ConfigError(f"{key}: must not have leading or trailing whitespace")
    try:
        check_security_context(config.security_context, uid=config.uid)
        check_capture(
            config.capture, bootstrap_mode=config.bootstrap.mode, targets=config.ports.envoy_targets()
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: Path | None) -> WebhookConfig:
    """Read and validate the YAML file at `path`; None means the built-in defaults."""
    if path is None:
        return WebhookConfig()
    return config_from_yaml(read_config_text(path), source=str(path))


def read_config_text(path: Path) -> str:
    """The config file's text; raise ConfigError if it is not UTF-8 (OSError if it cannot be read)."""
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        # A file that is not UTF-8 is a bad config like any other: the reload keeps the last good one.
        raise ConfigError(f"config: {path} is not valid YAML: {exc}") from exc


def config_from_yaml(text: str, *, source: str) -> WebhookConfig:
    """Parse and validate a config file's text; `source` names it in errors."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {source} is not valid YAML: {exc}") from exc
    return parse_config(raw)
