"""The API server's rules for the fields the pair puts into every pod, applied to the config up front.

A value the API server would refuse (a request above its limit, `allowPrivilegeEscalation: false` with
`privileged`) or that Pod Security `restricted` would refuse must fail at load, `check-config` and reload,
never on every pod created afterwards. Sources: k8s.io/kubernetes@v1.34.4/pkg/apis/core/validation/
validation.go (validateResourceRequirements, validateContainerResourceName, ValidateResourceQuantityValue,
ValidateSecurityContext) and k8s.io/apimachinery/pkg/api/resource/quantity.go. Errors are ValueErrors whose
message starts with the dotted config field; webhook.config turns them into ConfigErrors. Pure.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from webhook import podsecurity

# https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")
# A qualified name (apimachinery IsQualifiedName), the rule of resource names: hugepages-2Mi, example.com/gpu.
RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
OVERCOMMITTABLE_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_SUFFIXES = {
    **{suffix: Decimal(1000) ** power for suffix, power in (("n", -3), ("u", -2), ("m", -1), ("", 0))},
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", start=1)},
    **{suffix + "i": Decimal(1024) ** power for power, suffix in enumerate("KMGTPE", start=1)},
}


@dataclass(frozen=True)
class Profile:
    """A seccomp or AppArmor profile: RuntimeDefault, Localhost (with its profile) or Unconfined."""

    type: str
    localhost_profile: str | None = None

    def to_json(self) -> dict[str, str]:
        rendered = {"type": self.type}
        if self.localhost_profile is not None:
            rendered["localhostProfile"] = self.localhost_profile
        return rendered


@dataclass(frozen=True)
class SecurityContext:
    """The pair's container securityContext; the defaults pass Pod Security `restricted`.

    runAsUser is not here: it is `uid`, the same in both containers (Envoy's hot restart needs that).
    """

    run_as_group: int | None = None  # None: uid
    run_as_non_root: bool = True
    allow_privilege_escalation: bool = False
    privileged: bool | None = None
    read_only_root_filesystem: bool | None = None
    capabilities_add: tuple[str, ...] = ()
    capabilities_drop: tuple[str, ...] = ("ALL",)
    seccomp_profile: Profile = Profile("RuntimeDefault")
    app_armor_profile: Profile | None = None
    proc_mount: str | None = None
    se_linux_options: tuple[tuple[str, str], ...] = ()

    def to_json(self, uid: int) -> dict[str, Any]:
        """The securityContext of one container of the pair, as in a Pod spec."""
        rendered: dict[str, Any] = {
            "runAsUser": uid,
            "runAsGroup": uid if self.run_as_group is None else self.run_as_group,
            "runAsNonRoot": self.run_as_non_root,
            "allowPrivilegeEscalation": self.allow_privilege_escalation,
        }
        if self.privileged is not None:
            rendered["privileged"] = self.privileged
        if self.read_only_root_filesystem is not None:
            rendered["readOnlyRootFilesystem"] = self.read_only_root_filesystem
        capabilities: dict[str, list[str]] = {}
        if self.capabilities_add:
            capabilities["add"] = list(self.capabilities_add)
        if self.capabilities_drop:
            capabilities["drop"] = list(self.capabilities_drop)
        if capabilities:
            rendered["capabilities"] = capabilities
        rendered["seccompProfile"] = self.seccomp_profile.to_json()
        if self.app_armor_profile is not None:
            rendered["appArmorProfile"] = self.app_armor_profile.to_json()
        if self.proc_mount is not None:
            rendered["procMount"] = self.proc_mount
        if self.se_linux_options:
            rendered["seLinuxOptions"] = dict(self.se_linux_options)
        return rendered


def quantity_value(text: str) -> Decimal:
    """The value of a Kubernetes quantity (`64Mi`, `100m`, `1e3`); ValueError if it is not one.

    Own code rather than `kubernetes.utils.parse_quantity`: importing the client costs seconds per worker.
    """
    match = QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    suffix = match.group(3) or ""
    number = Decimal(text[: len(text) - len(suffix)])
    if suffix in _SUFFIXES:
        return number * _SUFFIXES[suffix]
    return number * Decimal(10) ** int(suffix[1:])  # a decimal exponent: 1e3, 5E-2


def _check_resource_name(name: str, where: str) -> None:
    if "/" not in name and name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        raise ValueError(f"{where}: must be a standard resource for containers (cpu, memory, ...)")


def check_resources(requests: Sequence[tuple[str, str]], limits: Sequence[tuple[str, str]]) -> None:
    """Raise ValueError for requests/limits the API server would reject in a container."""
    texts = {"requests": dict(requests), "limits": dict(limits)}
    values = {section: {n: quantity_value(t) for n, t in pairs.items()} for section, pairs in texts.items()}
    for section, quantities in values.items():
        for name, value in quantities.items():
            where = f"resources.{section}.{name}"
            _check_resource_name(name, where)
            if value < 0:
                raise ValueError(f"{where}: must be a valid resource quantity (not negative)")
            if "/" in name and value != value.to_integral_value():
                raise ValueError(f"{where}: must be an integer")
    for name, request in values["requests"].items():
        limit = values["limits"].get(name)
        where = f"resources.requests.{name}"
        if name not in OVERCOMMITTABLE_RESOURCES:
            if limit is None:
                raise ValueError(f"resources.limits.{name}: must be set for a non-overcommittable resource")
            if request != limit:
                raise ValueError(f"{where}: must be equal to the {name} limit")
        elif limit is not None and request > limit:
            raise ValueError(
                f"{where}: {texts['requests'][name]} must be at most the {name} limit {texts['limits'][name]}"
            )
    names = {*values["requests"], *values["limits"]}
    if any(name.startswith("hugepages-") for name in names) and not {"cpu", "memory"} & names:
        raise ValueError("resources: hugepages require cpu or memory")


def check_security_context(context: SecurityContext, *, uid: int) -> None:
    """Raise ValueError for a securityContext the API server refuses or Pod Security `restricted` rejects.

    The webhook cannot see the namespace's level, so the pair must pass the strictest one by itself,
    without help from the pod's own securityContext.
    """
    if not context.allow_privilege_escalation and context.privileged:
        raise ValueError(
            "securityContext: cannot set allowPrivilegeEscalation to false and privileged to true"
        )
    if not context.allow_privilege_escalation and "CAP_SYS_ADMIN" in context.capabilities_add:
        raise ValueError(
            "securityContext: cannot set allowPrivilegeEscalation to false and capabilities.add CAP_SYS_ADMIN"
        )
    pod = {"spec": {"containers": [{"name": "pair", "securityContext": context.to_json(uid)}]}}
    violations = podsecurity.restricted_violations(pod)
    if violations:
        reasons = "; ".join(v.reason for v in violations)
        raise ValueError(
            f"securityContext: the pair would break Pod Security restricted ({reasons}) and so turn "
            "compliant pods into rejected ones"
        )
