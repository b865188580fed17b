"""The SidecarRelease CRD as `helm template --include-crds` renders it: strict validation, a structural
schema with a description on every field (`kubectl explain`), and a schema that agrees with
releaseapi.release's parser on what is valid. The CEL rules run only in the API server (next: the
apiserver integration tests of issue 14); here each is checked to carry a message."""

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from localcluster.helm import REPO, run_helm, template_args
from releaseapi.release import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAME, VERSION, parse_release

CRD_NAME = f"{PLURAL}.{GROUP}"
EXAMPLE = REPO / "docs" / "examples" / "sidecarrelease.yaml"


def _rendered_crd(kube_version: str | None = None) -> dict[str, Any]:
    text = run_helm([*template_args(kube_version=kube_version), "--include-crds"]).stdout
    crds = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == [CRD_NAME]
    found: dict[str, Any] = crds[0]
    return found


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return _rendered_crd()


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _version(crd)["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("kube_version", [None, "1.30.0", "1.34.4"])
def test_crd_passes_strict_validation(kube_version: str | None) -> None:
    version = kube_version or kubernetes_validate.latest_version()
    kubernetes_validate.validate(_rendered_crd(kube_version), version, strict=True)


def test_names_scope_and_subresources(crd: dict[str, Any]) -> None:
    spec = crd["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (GROUP, "Cluster", KIND)
    assert spec["names"]["plural"] == PLURAL and SHORT_NAME in spec["names"]["shortNames"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) == 0]
    assert columns == ["Image", "Matched", "Updated", "Ready", "Failed", "Paused", "Age"]


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural_and_explained(crd: dict[str, Any]) -> None:
    nodes = dict(_walk(_schema(crd), ""))
    assert ".spec.strategy.maxUnavailable" in nodes and ".status.conditions[].reason" in nodes
    for path, node in nodes.items():
        assert "type" in node or node.get("x-kubernetes-int-or-string") is True, f"{path}: no type"
        assert (
            node.get("type") != "object"
            or "properties" in node
            or "additionalProperties" in node
            or path == ".metadata"
        ), f"{path}: an object without properties is not structural"
        # kubectl explain shows an array's description, not its scalar items'; metadata is ObjectMeta's.
        scalar_item = path.endswith(("[]", "{}")) and node.get("type") != "object"
        explained = scalar_item or path == ".metadata"
        assert explained or node.get("description"), f"{path}: no description (kubectl explain)"
        for rule in node.get("x-kubernetes-validations", []):
            assert rule.get("message") and "\n" not in rule["message"], f"{path}: CEL rule without message"
    assert set(nodes[".spec"]["required"]) == {"selector", "image"}


def _as_json_schema(node: Any) -> Any:
    """OpenAPI v3 (as CRDs use it) to JSON Schema: int-or-string becomes a type union."""
    if isinstance(node, list):
        return [_as_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    return out


def _example() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return loaded


def test_the_documented_example_is_valid(crd: dict[str, Any]) -> None:
    example = _example()
    jsonschema.validate(example, _as_json_schema(_schema(crd)))
    release = parse_release(example)
    assert example["apiVersion"] == API_VERSION and release.spec.strategy.partition.value == 3


def _edited(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_example())
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        ("spec.image", None, "spec.image: must be a non-empty"),
        ("spec.image", "", "spec.image: must be a non-empty"),
        ("spec.selector", None, "spec.selector: required"),
        ("spec.strategy.maxFailures", 0, "spec.strategy.maxFailures: must be an integer >= 1"),
        ("spec.strategy.paused", "yes", "spec.strategy.paused: must be true or false"),
        ("spec.priority", "high", "spec.priority: must be an integer"),
        (
            "spec.selector.matchExpressions",
            [{"key": "a", "operator": "Gt", "values": ["1"]}],
            "spec.selector.matchExpressions[0].operator: must be one of",
        ),
    ],
)
def test_schema_and_parser_refuse_the_same_specs(
    crd: dict[str, Any], path: str, value: Any, error: str
) -> None:
    doc = _edited(path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _as_json_schema(_schema(crd)))
    with pytest.raises(ValueError) as caught:
        parse_release(doc)
    assert error in str(caught.value)


def test_cel_rules_cover_what_the_schema_cannot_say(crd: dict[str, Any]) -> None:
    nodes = dict(_walk(_schema(crd), ""))
    rules = {
        path: [r["rule"] for r in node.get("x-kubernetes-validations", [])] for path, node in nodes.items()
    }
    assert any("emptyImage" in r for r in rules[".spec"])
    assert any("self >= 1" in r and "%" in r for r in rules[".spec.strategy.maxUnavailable"])
    assert any("self >= 0" in r for r in rules[".spec.strategy.partition"])
    assert any("'In', 'NotIn'" in r for r in rules[".spec.selector.matchExpressions[]"])
    assert any("'In', 'NotIn'" in r for r in rules[".spec.namespaceSelector.matchExpressions[]"])
