"""kubectl's `-l` syntax into a LabelSelector document, checked against our own matcher."""

import pytest

from controller.cli.selectors import (
    SelectorSyntaxError,
    namespaces_selector,
    parse_label_selector,
)
from controller.selector import parse_selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("  ", {}),
        ("app=web", {"matchLabels": {"app": "web"}}),
        ("app==web,tier=front", {"matchLabels": {"app": "web", "tier": "front"}}),
        (
            "track!=canary",
            {"matchExpressions": [{"key": "track", "operator": "NotIn", "values": ["canary"]}]},
        ),
        (
            "env in (prod, staging),app=web",
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "staging"]}],
            },
        ),
        ("env notin (dev)", {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}),
        (
            "example.com/team, !legacy",
            {
                "matchExpressions": [
                    {"key": "example.com/team", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ]
            },
        ),
    ],
)
def test_kubectl_syntax(text: str, expected: dict[str, object]) -> None:
    assert parse_label_selector(text) == expected


@pytest.mark.parametrize(
    ("labels", "matches"),
    [
        ({"app": "web", "env": "prod"}, True),
        ({"app": "web", "env": "prod", "track": "canary"}, False),
        ({"app": "web", "env": "dev"}, False),
        ({"app": "web", "env": "prod", "legacy": "1"}, False),
        ({"env": "prod"}, False),
    ],
)
def test_the_document_selects_what_kubectl_would(labels: dict[str, str], matches: bool) -> None:
    doc = parse_label_selector("app=web,env in (prod,staging),track!=canary,!legacy")
    assert parse_selector(doc, "spec.selector").matches(labels) is matches


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("app=web,,tier=x", "empty requirement"),
        ("env in (a", "unbalanced '('"),
        ("env in a)", "unbalanced ')'"),
        ("env in ()", "at least one value"),
        ("a=b=c", "is not a label requirement"),
        ("app=web,app=api", "must equal both"),
    ],
)
def test_bad_text_is_refused_with_the_part(text: str, says: str) -> None:
    with pytest.raises(SelectorSyntaxError) as refused:
        parse_label_selector(text)
    assert says in str(refused.value)


def test_namespaces_by_their_name_label() -> None:
    assert namespaces_selector(["shop"]) == {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
    two = namespaces_selector(["shop", "pay", "shop"])
    assert two == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["pay", "shop"]}
        ]
    }
    assert parse_selector(two, "x").matches({"kubernetes.io/metadata.name": "pay"})
