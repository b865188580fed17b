"""values.schema.json: a typo or a wrong type fails at install; values.yaml documents every value."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.helm import CHART, HelmError, render, run_helm

REJECTED = {
    "top-level typo": ["replicaCount=3"],
    "nested typo": ["webhook.replica=3"],
    "typo in injection": ["injection.sidecarimage=x:1"],
    "typo in certManager": ["certManager.enable=true"],
    "failurePolicy not an enum value": ["admission.mutating.failurePolicy=fail"],
    "timeout above the API server's limit": ["admission.validating.timeoutSeconds=31"],
    "mode not an enum value": ["injection.mode=native"],
    "privileged port": ["webhook.port=443"],
    "string for an integer": ["injection.drainSeconds=thirty"],
    "three container names": ["injection.containerNames={a,b,c}"],
    "duplicate container names": ["injection.containerNames={a,a}"],
    "reserved env name": ["injection.env.HOTUPGRADE_SLOT=a"],
    "bad quantity": ["injection.resources.limits.memory=lots"],
    "anti-affinity preset": ["podAntiAffinity=always"],
    "unknown issuerRef field": ["certManager.issuerRef.namespace=x"],
    "bad duration": ["certManager.duration=90d"],
    # The pair's securityContext may only be as strict as Pod Security `restricted` or stricter.
    "privilege escalation": ["injection.securityContext.allowPrivilegeEscalation=true"],
    "root allowed": ["injection.securityContext.runAsNonRoot=false"],
    "privileged": ["injection.securityContext.privileged=true"],
    "runAsUser instead of uid": ["injection.securityContext.runAsUser=0"],
    "capability added": ["injection.securityContext.capabilities.add={NET_ADMIN}"],
    "ALL not dropped": ["injection.securityContext.capabilities.drop={NET_RAW}"],
    "seccomp Unconfined": ["injection.securityContext.seccompProfile.type=Unconfined"],
    "Localhost seccomp without a profile": ["injection.securityContext.seccompProfile.type=Localhost"],
    "AppArmor Unconfined": ["injection.securityContext.appArmorProfile.type=Unconfined"],
    "procMount Unmasked": ["injection.securityContext.procMount=Unmasked"],
    "SELinux user": ["injection.securityContext.seLinuxOptions.user=root"],
    "windowsOptions": ["injection.securityContext.windowsOptions.hostProcess=true"],
    "runToCompletion not an enum value": ["injection.runToCompletion=containers"],
    "negative quantity": ["injection.resources.requests.cpu=-1"],
    "negative quantity string": ["injection.resources.requests.memory=-64Mi"],
    "resource name": ["injection.resources.requests.gp u=1"],
    "bootstrap mode not an enum value": ["injection.bootstrap.mode=dynamic"],
    "xds mode without an address": ["injection.bootstrap.mode=xds"],
    "xds address without a port": ["injection.bootstrap.xds.address=xds.mesh.svc"],
    "typo in bootstrap": ["injection.bootstrap.xds.adress=xds:18000"],
    "bad ConfigMap name": ["injection.bootstrap.custom.configMap=Envoy_Bootstrap"],
    "take-over deadline of zero": ["injection.takeoverDeadlineSeconds=0"],
    "capture mode not an enum value": ["injection.capture.mode=ebpf"],
    "capture port out of range": ["injection.capture.mode=iptables", "injection.capture.ports={70000}"],
}


@pytest.mark.parametrize("sets", REJECTED.values(), ids=REJECTED.keys())
def test_schema_rejects(sets: list[str]) -> None:
    with pytest.raises(HelmError, match="schema"):
        render(sets=sets)


def test_schema_accepts_the_documented_escape_hatches() -> None:
    manifests = render(
        sets=[
            "webhook.extraArgs={--threads=8}",
            "controller.extraEnv[0].name=FOO",
            "controller.extraEnv[0].value=bar",
            "commonLabels.team=mesh",
            "injection.env.ENVOY_LOG_LEVEL=debug",
        ]
    )
    assert all(m["metadata"]["labels"]["team"] == "mesh" for m in manifests)


def test_schema_accepts_a_tighter_security_context() -> None:
    manifests = render(
        sets=[
            "injection.securityContext.readOnlyRootFilesystem=true",
            "injection.securityContext.seccompProfile.type=Localhost",
            "injection.securityContext.seccompProfile.localhostProfile=profiles/envoy.json",
            "injection.securityContext.capabilities.add={NET_BIND_SERVICE}",
            "injection.securityContext.seLinuxOptions.level=s0:c1",
            "injection.runToCompletion=skip",
        ]
    )
    [configmap] = [m for m in manifests if m["kind"] == "ConfigMap"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    assert config["securityContext"]["seccompProfile"] == {
        "type": "Localhost",
        "localhostProfile": "profiles/envoy.json",
    }
    assert config["securityContext"]["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}
    assert config["runToCompletion"] == "skip"


CASES = Path(__file__).resolve().parents[2] / "unit" / "webhook" / "testdata" / "cases"
TEMPLATE_REFUSALS = {
    # Issue 10's chart values cases, as `helm upgrade -f` would pass them.
    "limit below request (case file)": (
        ["--values", str(CASES / "limit-below-request-values.yaml")],
        "injection.resources.requests.memory (64Mi) must be at most injection.resources.limits.memory (48Mi)",
    ),
    "parent shutdown equal to drain (case file)": (
        ["--values", str(CASES / "drain-equals-parent-shutdown-values.yaml")],
        "injection.parentShutdownSeconds (1) must exceed injection.drainSeconds (1)",
    ),
    "cpu limit below request": (
        ["--set", "injection.resources.requests.cpu=1.5", "--set", "injection.resources.limits.cpu=1500m"],
        None,
    ),
    "cpu request above limit": (
        ["--set", "injection.resources.requests.cpu=2", "--set", "injection.resources.limits.cpu=1500m"],
        "injection.resources.requests.cpu (2) must be at most injection.resources.limits.cpu (1500m)",
    ),
    "memory in other units (1G is 1000000000, 953Mi 999292928)": (
        [
            "--set",
            "injection.resources.requests.memory=1G",
            "--set",
            "injection.resources.limits.memory=953Mi",
        ],
        "injection.resources.requests.memory (1G) must be at most",
    ),
    "take-over deadline not below the postStart wait": (
        ["--set", "injection.takeoverDeadlineSeconds=120"],
        "injection.takeoverDeadlineSeconds (120) must be less than injection.waitTimeoutSeconds (120)",
    ),
    "two pair ports on one number": (
        ["--set", "injection.ports.tcpListen=15110"],
        "injection.ports.tcpListen (15110) is already used by injection.ports.listen",
    ),
    "the app's port is a pair port": (
        ["--set", "injection.ports.upstream=15100"],
        "injection.ports.upstream (15100) is the app's port but injection.ports.admin binds it",
    ),
    "capture of a port Envoy does not forward": (
        ["--set", "injection.capture.mode=iptables", "--set", "injection.capture.ports={9090}"],
        "injection.capture.ports: 9090 is not a port Envoy forwards to (injection.ports.upstream 8080",
    ),
    "capture with the xds bootstrap": (
        [
            *("--set", "injection.capture.mode=iptables", "--set", "injection.bootstrap.mode=xds"),
            *("--set", "injection.bootstrap.xds.address=cp:18000"),
        ],
        "injection.capture.mode iptables needs injection.bootstrap.mode static (got xds)",
    ),
}


@pytest.mark.parametrize("name", TEMPLATE_REFUSALS)
def test_templates_refuse_values_that_would_break_every_pod(name: str) -> None:
    args, message = TEMPLATE_REFUSALS[name]
    result = run_helm(["template", "hu", str(CHART), *args], check=False)
    if message is None:  # equal quantities in different spellings are fine
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def _closed(schema: dict[str, Any], path: str, open_paths: list[str]) -> None:
    """Collect every object schema with declared properties that still allows unknown keys."""
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and schema.get("additionalProperties") is not False
    ):
        open_paths.append(path or "/")
    for key, sub in (schema.get("properties") or {}).items():
        _closed(sub, f"{path}/{key}", open_paths)


def test_every_declared_object_is_closed() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_paths: list[str] = []
    _closed(schema, "", open_paths)
    assert open_paths == []


def test_schema_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, sub: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in sub:
            for key, child in value.items():
                assert key in sub["properties"], f"{path}.{key} is in values.yaml but not in the schema"
                walk(child, sub["properties"][key], f"{path}.{key}")

    walk(values, schema, "")


KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9_]*):")


def _key_comments(lines: list[str]) -> dict[str, str | None]:
    """Dotted path of each key -> the first line of the comment block directly above it (or None)."""
    result: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        match = KEY.match(line)
        if not match:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(name for _, name in stack), match["key"]])
        stack.append((indent, match["key"]))
        start = index
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        result[path] = lines[start].strip() if start < index else None
    return result


def test_values_yaml_documents_every_value() -> None:
    # helm-docs convention: "# -- text" documents a value (and so everything inside it, like the
    # `requests:` of a documented `resources:`); a plain comment introduces a section, whose keys
    # must then be documented one by one.
    comments = _key_comments((CHART / "values.yaml").read_text().splitlines())
    assert len(comments) > 50

    def documented(path: str) -> bool:
        if comments.get(path) is not None:
            return True
        parts = path.split(".")
        ancestors = (".".join(parts[:i]) for i in range(1, len(parts)))
        return any((comments.get(a) or "").startswith("# --") for a in ancestors)

    assert [path for path in comments if not documented(path)] == []


def test_the_documentation_check_can_fail() -> None:
    lines = ["# a section", "webhook:", "  # -- documented", "  replicas: 2", "  port: 9443"]
    comments = _key_comments(lines)
    assert comments == {"webhook": "# a section", "webhook.replicas": "# -- documented", "webhook.port": None}
