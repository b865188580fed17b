"""The JSON diff behind the admission patch, checked against jsonpatch as the oracle."""

from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.jsondiff import diff, escape

# Scalars whose Python equality is JSON equality (see the module docstring for 1, 1.0 and true).
SCALARS = st.none() | st.integers(-5, 5) | st.text(alphabet="ab~/", max_size=3)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(alphabet="ab~/", max_size=3), children, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(old=JSON, new=JSON)
def test_applying_the_diff_gives_the_new_document(old: Any, new: Any) -> None:
    assert jsonpatch.apply_patch(old, diff(old, new)) == new


@settings(max_examples=200, deadline=None)
@given(doc=JSON)
def test_a_document_against_itself_is_an_empty_diff(doc: Any) -> None:
    assert diff(doc, doc) == []


def test_insertions_are_adds_at_their_index() -> None:
    old = {"spec": {"containers": [{"name": "app"}]}}
    new = {"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "app"}], "volumes": [1]}}
    assert diff(old, new) == [
        {"op": "add", "path": "/spec/containers/0", "value": {"name": "a"}},
        {"op": "add", "path": "/spec/containers/1", "value": {"name": "b"}},
        {"op": "add", "path": "/spec/volumes", "value": [1]},
    ]


def test_keys_are_escaped() -> None:
    assert escape("a~b/c") == "a~0b~1c"
    assert diff({"m": {}}, {"m": {"x/y~z": 1}}) == [{"op": "add", "path": "/m/x~1y~0z", "value": 1}]


def test_a_type_change_is_a_replace() -> None:
    assert diff({"a": [1]}, {"a": {"b": 1}}) == [{"op": "replace", "path": "/a", "value": {"b": 1}}]
    assert diff([1], {"a": 1}) == [{"op": "replace", "path": "", "value": {"a": 1}}]
