"""values.schema.json: a typo or a wrong type fails at install; values.yaml documents every value."""

import json
import re
from typing import Any

import pytest
import yaml

from localcluster.helm import CHART, HelmError, render

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
