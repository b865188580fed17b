"""kubectl's `-l` selector syntax turned into a metav1.LabelSelector document, for the releases the CLI
writes. Pure.

The grammar is apimachinery's `labels.Parse` (k8s.io/apimachinery/pkg/labels/selector.go): requirements
separated by commas; `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not
exist). `!=` becomes `NotIn [v]`, which matches a pod without the label too, as kubectl's does. An empty
string selects everything (`{}`). Keys and values are checked by the API server, not here.
"""

import re

from controller.selector import LabelSelectorJSON, RequirementJSON

_SET = re.compile(r"^(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQUALITY = re.compile(r"^(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_KEY = re.compile(r"^(?P<neg>!?)\s*(?P<key>[^\s!=(),]+)$")


class SelectorSyntaxError(ValueError):
    """The text is not a label selector; the message quotes the part that is not."""


def _split(text: str) -> list[str]:
    """Requirements at top-level commas (a set's values have commas of their own)."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorSyntaxError(f"unbalanced ')' in {text!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise SelectorSyntaxError(f"unbalanced '(' in {text!r}")
    parts.append(current)
    return [p.strip() for p in parts]


def parse_label_selector(text: str) -> LabelSelectorJSON:
    """`-l` text as a LabelSelector document; `k=v` terms go to matchLabels, the rest to expressions."""
    out = LabelSelectorJSON()
    if not text.strip():
        return out
    labels: dict[str, str] = {}
    expressions: list[RequirementJSON] = []
    for part in _split(text):
        if not part:
            raise SelectorSyntaxError(f"empty requirement in {text!r}")
        if found := _SET.match(part):
            values = sorted({v.strip() for v in found["values"].split(",") if v.strip()})
            if not values:
                raise SelectorSyntaxError(f"{part!r}: a set needs at least one value")
            operator = "In" if found["op"] == "in" else "NotIn"
            expressions.append(RequirementJSON(key=found["key"], operator=operator, values=values))
        elif found := _EQUALITY.match(part):
            key, value = found["key"], found["value"]
            if found["op"] == "!=":
                expressions.append(RequirementJSON(key=key, operator="NotIn", values=[value]))
            elif labels.get(key, value) != value:
                raise SelectorSyntaxError(f"{key} must equal both {labels[key]!r} and {value!r}")
            else:
                labels[key] = value
        elif found := _KEY.match(part):
            operator = "DoesNotExist" if found["neg"] else "Exists"
            expressions.append(RequirementJSON(key=found["key"], operator=operator))
        else:
            raise SelectorSyntaxError(f"{part!r} is not a label requirement (k=v, k!=v, k in (a,b), k, !k)")
    if labels:
        out["matchLabels"] = labels
    if expressions:
        out["matchExpressions"] = expressions
    return out


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


def namespaces_selector(names: list[str]) -> LabelSelectorJSON:
    """A namespaceSelector for these namespaces by name (the label every namespace carries)."""
    unique = sorted(set(names))
    if len(unique) == 1:
        return LabelSelectorJSON(matchLabels={NAMESPACE_NAME_LABEL: unique[0]})
    return LabelSelectorJSON(
        matchExpressions=[RequirementJSON(key=NAMESPACE_NAME_LABEL, operator="In", values=unique)]
    )
