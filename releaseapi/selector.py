"""Kubernetes label selectors (metav1.LabelSelector): parsing and matching. Pure.

Semantics follow apimachinery's `LabelSelectorAsSelector` (k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go):
matchLabels and matchExpressions are ANDed; `In` needs the label with one of the values, `NotIn` matches
a missing label too, `Exists`/`DoesNotExist` take no values; an empty selector matches everything.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class RequirementJSON(TypedDict):
    key: str
    operator: str
    values: NotRequired[list[str]]


class LabelSelectorJSON(TypedDict, total=False):
    matchLabels: dict[str, str]
    matchExpressions: list[RequirementJSON]


class InvalidSelectorError(ValueError):
    """The selector is not a metav1.LabelSelector; the message names the field."""


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator in ("In", "=="):  # "==": a matchLabels entry
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        return not present  # DoesNotExist


@dataclass(frozen=True)
class LabelSelector:
    """matchLabels as requirements `key In (value)`, plus matchExpressions; all must hold."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def to_json(self) -> LabelSelectorJSON:
        labels = {r.key: next(iter(r.values)) for r in self.requirements if r.operator == "=="}
        expressions: list[RequirementJSON] = []
        for r in self.requirements:
            if r.operator == "==":
                continue
            item = RequirementJSON(key=r.key, operator=r.operator)
            if r.values:
                item["values"] = sorted(r.values)
            expressions.append(item)
        out = LabelSelectorJSON()
        if labels:
            out["matchLabels"] = labels
        if expressions:
            out["matchExpressions"] = expressions
        return out


EVERYTHING = LabelSelector()


def _requirement(value: Any, where: str) -> Requirement:
    if not isinstance(value, dict):
        raise InvalidSelectorError(f"{where}: must be an object")
    key, operator, values = value.get("key"), value.get("operator"), value.get("values")
    if not isinstance(key, str) or not key:
        raise InvalidSelectorError(f"{where}.key: must be a non-empty string")
    if operator not in OPERATORS:
        raise InvalidSelectorError(
            f"{where}.operator: must be one of {', '.join(OPERATORS)}, not {operator!r}"
        )
    if values is None:
        values = []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidSelectorError(f"{where}.values: must be a list of strings")
    if operator in ("In", "NotIn") and not values:
        raise InvalidSelectorError(f"{where}.values: must be non-empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise InvalidSelectorError(f"{where}.values: must be empty for operator {operator}")
    return Requirement(key=key, operator=operator, values=frozenset(values))


def parse_selector(value: Any, where: str) -> LabelSelector:
    """Parse a metav1.LabelSelector document; `where` prefixes error messages (e.g. `spec.selector`)."""
    if not isinstance(value, dict):
        raise InvalidSelectorError(f"{where}: must be an object (use {{}} to select everything)")
    unknown = set(value) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise InvalidSelectorError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    labels = value.get("matchLabels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidSelectorError(f"{where}.matchLabels: must map label keys to string values")
    expressions = value.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidSelectorError(f"{where}.matchExpressions: must be a list")
    requirements = [
        Requirement(key=k, operator="==", values=frozenset({v})) for k, v in sorted(labels.items())
    ]
    requirements += [_requirement(e, f"{where}.matchExpressions[{i}]") for i, e in enumerate(expressions)]
    return LabelSelector(tuple(requirements))
