"""The repair patch for tampered webhook configurations: what drifted, and the JSON patch that restores it."""

import copy
from typing import Any

import jsonpatch

from webhook.config_repair import describe, drift, repair_patch

CA = "Q0EgYnVuZGxl"


def configuration(**overrides: Any) -> dict[str, Any]:
    hooks = [
        {
            "name": "a.inject",
            "clientConfig": {"service": {"name": "wh"}, "caBundle": CA},
            "failurePolicy": "Fail",
        },
        {
            "name": "b.inject",
            "clientConfig": {"service": {"name": "wh"}, "caBundle": CA},
            "failurePolicy": "Fail",
        },
    ]
    return {"metadata": {"name": "injector", "resourceVersion": "41"}, "webhooks": hooks, **overrides}


def repaired(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(doc), ops)
    return result


def test_an_intact_configuration_needs_nothing() -> None:
    doc = configuration()
    assert drift(doc, ca_bundle=CA, failure_policy="Fail") == []
    assert repair_patch(doc, ca_bundle=CA, failure_policy="Fail") == []


def test_a_reapply_without_ca_bundle_and_with_another_policy_is_put_back() -> None:
    doc = configuration()
    del doc["webhooks"][0]["clientConfig"]["caBundle"]  # as rendered: no caBundle at all
    doc["webhooks"][1]["clientConfig"]["caBundle"] = ""  # or an empty one
    doc["webhooks"][1]["failurePolicy"] = "Ignore"
    ops = repair_patch(doc, ca_bundle=CA, failure_policy="Fail")
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "41"}
    assert [(o["op"], o["path"]) for o in ops[1:]] == [
        ("add", "/webhooks/0/clientConfig/caBundle"),
        ("replace", "/webhooks/1/clientConfig/caBundle"),
        ("replace", "/webhooks/1/failurePolicy"),
    ]
    assert repaired(doc, ops) == configuration()
    text = describe(drift(doc, ca_bundle=CA, failure_policy="Fail"))
    assert text == (
        "a.inject.caBundle: unset -> the CA; b.inject.caBundle: unset -> the CA; "
        "b.inject.failurePolicy: Ignore -> Fail"
    )


def test_a_missing_policy_is_added_and_a_foreign_ca_replaced() -> None:
    doc = configuration()
    del doc["webhooks"][0]["failurePolicy"]
    doc["webhooks"][1]["clientConfig"]["caBundle"] = "b3RoZXI="
    ops = repair_patch(doc, ca_bundle=CA, failure_policy="Ignore")
    assert repaired(doc, ops)["webhooks"][0]["failurePolicy"] == "Ignore"
    assert [w["clientConfig"]["caBundle"] for w in repaired(doc, ops)["webhooks"]] == [CA, CA]
    assert "b.inject.caBundle: another CA -> the CA" in describe(
        drift(doc, ca_bundle=CA, failure_policy="Ignore")
    )


def test_no_webhooks_nothing_to_patch() -> None:
    assert repair_patch({"metadata": {"resourceVersion": "1"}}, ca_bundle=CA, failure_policy="Fail") == []
