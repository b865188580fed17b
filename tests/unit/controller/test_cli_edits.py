"""What `hotupgrade rollout|pause|resume|rollback NAME` sends: the release to create, or a JSON patch of
the spec pinned to the resourceVersion read. Applied with jsonpatch here to check the result."""

import copy
from typing import Any

import jsonpatch
import pytest

from controller.cli.edits import (
    EditRefusedError,
    RolloutRequest,
    int_or_percent,
    new_release,
    paused_edit,
    rollback_candidates,
    rollback_edit,
    rollout_edit,
    spec_patch,
)
from controller.release import parse_release
from controller.selector import LabelSelectorJSON
from tests.unit.controller.podfixtures import NEW, OLD

NEWER = "registry.local/hotupgrade-sidecar:3"
WEB = LabelSelectorJSON(matchLabels={"app": "web"})
SHOP = LabelSelectorJSON(matchLabels={"kubernetes.io/metadata.name": "shop"})


def served(image: str = NEW, *, status: dict[str, Any] | None = None, **strategy: Any) -> dict[str, Any]:
    """A release as the API server returns it: defaults filled in, a resourceVersion, a status."""
    return {
        "apiVersion": "hotupgrade.io/v1alpha1",
        "kind": "SidecarRelease",
        "metadata": {"name": "web", "generation": 3, "resourceVersion": "4711"},
        "spec": {
            "namespaceSelector": SHOP,
            "selector": WEB,
            "image": image,
            "strategy": {"maxUnavailable": 1, "partition": 0, "paused": False, "maxFailures": 1, **strategy},
            "priority": 0,
        },
        "status": status or {"observedGeneration": 3, "image": image, "previousImages": [OLD]},
    }


def sent(current: dict[str, Any], edited: dict[str, Any]) -> dict[str, Any]:
    """The release after the API server applies the patch the CLI sends."""
    ops = spec_patch(current, edited)
    assert ops[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "4711"}
    assert all(op["path"].startswith("/spec/") for op in ops[1:]), ops
    result: dict[str, Any] = jsonpatch.apply_patch(current, ops)
    return result


def test_create_needs_pods_and_namespaces_and_gives_a_valid_release() -> None:
    request = RolloutRequest(name="web", image=NEW, selector=WEB, namespace_selector=SHOP)
    body = new_release(request)
    assert body["spec"] == {"image": NEW, "selector": WEB, "namespaceSelector": SHOP}
    assert parse_release(body).spec.image == NEW
    with pytest.raises(EditRefusedError, match="-l SELECTOR"):
        new_release(RolloutRequest(name="web", image=NEW, namespace_selector=SHOP))
    with pytest.raises(EditRefusedError, match="-n NAMESPACE"):
        new_release(RolloutRequest(name="web", image=NEW, selector=WEB))
    everywhere = new_release(
        RolloutRequest(name="web", image=NEW, selector=LabelSelectorJSON(), all_namespaces=True)
    )
    assert "namespaceSelector" not in everywhere["spec"] and everywhere["spec"]["selector"] == {}


def test_rollout_sets_the_image_and_only_the_fields_given() -> None:
    current = served(OLD)
    request = RolloutRequest(name="web", image=NEW, strategy={"maxUnavailable": "25%", "partition": 2})
    after = sent(current, rollout_edit(current, request))
    assert after["spec"]["image"] == NEW
    assert after["spec"]["strategy"] == {
        "maxUnavailable": "25%",
        "partition": 2,
        "paused": False,
        "maxFailures": 1,
    }
    assert after["spec"]["selector"] == WEB and after["spec"]["namespaceSelector"] == SHOP
    assert after["status"] == current["status"], "the CLI never writes status"
    assert current == served(OLD), "the release read is not changed in place"
    moved = sent(current, rollout_edit(current, RolloutRequest(name="web", image=OLD, all_namespaces=True)))
    assert "namespaceSelector" not in moved["spec"]


def test_an_edit_that_changes_nothing_sends_nothing() -> None:
    current = served(NEW)
    assert spec_patch(current, rollout_edit(current, RolloutRequest(name="web", image=NEW))) == []
    assert spec_patch(current, paused_edit(current, paused=False)) == []


def test_pause_and_resume_flip_only_paused() -> None:
    current = served(NEW)
    paused = sent(current, paused_edit(current, paused=True))
    assert paused["spec"]["strategy"]["paused"] is True
    expected = copy.deepcopy(current)
    expected["spec"]["strategy"]["paused"] = True
    expected["metadata"]["resourceVersion"] = "4711"
    assert paused == expected
    resumed = sent(paused, paused_edit(paused, paused=False))
    assert resumed["spec"] == current["spec"]
    bare = served(NEW)
    del bare["spec"]["strategy"]
    assert sent(bare, paused_edit(bare, paused=True))["spec"]["strategy"] == {"paused": True}


def test_rollback_goes_to_the_latest_previous_image() -> None:
    current = served(NEW, status={"observedGeneration": 3, "image": NEW, "previousImages": [OLD, NEWER]})
    assert rollback_candidates(current) == (OLD, NEWER)
    assert sent(current, rollback_edit(current))["spec"]["image"] == OLD
    assert sent(current, rollback_edit(current, to=NEWER))["spec"]["image"] == NEWER
    with pytest.raises(EditRefusedError, match="is not a previous image"):
        rollback_edit(current, to="registry.local/elsewhere:9")


def test_rollback_before_the_controller_saw_an_edit_goes_back_to_what_status_describes() -> None:
    # spec moved OLD -> NEW (generation 4) and the controller has not written status since: back to OLD.
    current = served(NEW, status={"observedGeneration": 3, "image": OLD, "previousImages": [NEWER]})
    assert rollback_candidates(current) == (OLD, NEWER)


@pytest.mark.parametrize(
    "status",
    [None, {}, {"observedGeneration": 1, "image": NEW, "previousImages": []}, {"previousImages": [NEW]}],
)
def test_rollback_without_a_previous_image_is_refused_clearly(status: dict[str, Any] | None) -> None:
    current = served(NEW)
    current["status"] = status
    with pytest.raises(EditRefusedError, match="has no previous image to roll back to"):
        rollback_edit(current)


def test_flag_values_for_int_or_string_fields() -> None:
    assert int_or_percent("3") == 3
    assert int_or_percent(" 25% ") == "25%"
    assert int_or_percent("-1") == -1  # the API server's rule refuses it, in its words
    assert int_or_percent("a lot") == "a lot"


def test_a_moved_key_is_addressed_under_spec() -> None:
    current = served(NEW)
    edited = copy.deepcopy(current)
    edited["spec"]["emptyImage"] = edited["spec"].pop("image")  # jsonpatch says `move` for this
    ops = spec_patch(current, edited)
    assert {"op": "move", "from": "/spec/image", "path": "/spec/emptyImage"} in ops
    assert sent(current, edited)["spec"] == edited["spec"]
