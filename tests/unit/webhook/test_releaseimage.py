"""The image a new pod gets: its governing release's (the controller's rule), else the config default;
the snapshot file's round trip; and the same owner as the controller's planner for any fleet."""

import json
from dataclasses import replace
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.rollout import PodFacts, plan_fleet
from releaseapi.release import API_VERSION, KIND
from tests.unit.controller.podfixtures import STATUS, T0
from webhook.config import WebhookConfig
from webhook.inject import plan_injection
from webhook.injection_status import parse_status
from webhook.releaseimage import (
    ImageChoice,
    InvalidSnapshotError,
    Snapshot,
    choose_images,
    parse_snapshot,
    render_snapshot,
)

CONFIG = WebhookConfig()


def doc(name: str, image: str, *, selector: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"selector": selector or {"matchLabels": {"app": "web"}}, "image": image, **spec}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "generation": 4},
        "spec": body,
    }


def snapshot(*docs: dict[str, Any], namespaces: dict[str, dict[str, str]] | None = None) -> Snapshot:
    text = render_snapshot(list(docs), namespaces or {}, events=7, updated=100.0, synced=90.0)
    return parse_snapshot(text)


def test_without_a_snapshot_or_a_selecting_release_the_config_default_is_injected() -> None:
    default = ImageChoice(CONFIG.sidecar_image, CONFIG.empty_image)
    assert choose_images(None, labels={"app": "web"}, namespace="shop", config=CONFIG) == default
    only_api = snapshot(doc("api", "r/sidecar:2", selector={"matchLabels": {"app": "api"}}))
    assert choose_images(only_api, labels={"app": "web"}, namespace="shop", config=CONFIG) == default
    assert default.source == "default" and default.applied(CONFIG) is CONFIG


def test_the_governing_release_gives_its_image_and_its_empty_image_if_set() -> None:
    plain = choose_images(
        snapshot(doc("web", "r/sidecar:2")), labels={"app": "web"}, namespace="shop", config=CONFIG
    )
    assert plain == ImageChoice("r/sidecar:2", CONFIG.empty_image, release="web", generation=4)
    assert plain.source == "release"
    assert plain.applied(CONFIG) == replace(CONFIG, sidecar_image="r/sidecar:2")
    with_empty = snapshot(doc("web", "r/sidecar:2", emptyImage="r/empty:2"))
    chosen = choose_images(with_empty, labels={"app": "web"}, namespace="shop", config=CONFIG)
    assert (chosen.sidecar_image, chosen.empty_image) == ("r/sidecar:2", "r/empty:2")


def test_overlaps_follow_priority_then_name_as_the_controller() -> None:
    fleet = doc("a-fleet", "r/sidecar:2")
    canary = doc("z-canary", "r/sidecar:3", selector={"matchLabels": {"track": "canary"}}, priority=5)
    both = snapshot(fleet, canary)
    chosen = choose_images(both, labels={"app": "web", "track": "canary"}, namespace="shop", config=CONFIG)
    assert (chosen.release, chosen.sidecar_image) == ("z-canary", "r/sidecar:3")
    tie = snapshot(doc("b", "r/sidecar:2"), doc("a", "r/sidecar:3"))
    assert choose_images(tie, labels={"app": "web"}, namespace="shop", config=CONFIG).release == "a"


def test_namespace_selectors_read_the_cached_namespace_labels() -> None:
    shop = doc("shop", "r/sidecar:2", namespaceSelector={"matchLabels": {"team": "shop"}})
    snap = snapshot(shop, namespaces={"shop": {"team": "shop"}, "other": {"team": "x"}})
    assert choose_images(snap, labels={"app": "web"}, namespace="shop", config=CONFIG).release == "shop"
    assert choose_images(snap, labels={"app": "web"}, namespace="other", config=CONFIG).release is None
    # A namespace the cache has not seen yet still has its name label (the API server sets it on every one).
    by_name = doc(
        "n", "r/sidecar:2", namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "new"}}
    )
    assert (
        choose_images(snapshot(by_name), labels={"app": "web"}, namespace="new", config=CONFIG).release == "n"
    )


def test_a_release_that_does_not_parse_governs_nothing_and_is_named() -> None:
    snap = snapshot(doc("broken", "not a reference!"), doc("web", "r/sidecar:2", priority=-1))
    assert snap.invalid == ("broken",)
    assert choose_images(snap, labels={"app": "web"}, namespace="shop", config=CONFIG).release == "web"


def test_the_snapshot_round_trips_and_refuses_what_it_is_not() -> None:
    snap = snapshot(doc("web", "r/sidecar:2"), namespaces={"shop": {"team": "shop"}})
    assert (snap.events, snap.updated, snap.synced) == (7, 100.0, 90.0)
    assert [r.name for r in snap.releases] == ["web"] and snap.namespaces == {"shop": {"team": "shop"}}
    for text in (
        "",
        "[]",
        json.dumps({"version": 2}),
        json.dumps({"version": 1, "releases": {}, "namespaces": {}}),
    ):
        with pytest.raises(InvalidSnapshotError):
            parse_snapshot(text)
    unstamped = json.loads(render_snapshot([], {}, events=0, updated=1.0, synced=1.0))
    del unstamped["updated"]
    with pytest.raises(InvalidSnapshotError, match="updated"):
        parse_snapshot(json.dumps(unstamped))


def test_the_status_annotation_names_the_release_that_chose_the_image() -> None:
    pod: dict[str, Any] = {
        "metadata": {"name": "w", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }
    choice = choose_images(
        snapshot(doc("web", "r/sidecar:2")), labels={"app": "web"}, namespace="shop", config=CONFIG
    )
    decision, patch = plan_injection(
        pod, namespace="shop", config=choice.applied(CONFIG), release=choice.release
    )
    assert decision.inject
    injected = jsonpatch.apply_patch(pod, patch)
    status = parse_status(injected["metadata"]["annotations"]["hotupgrade.io/status"])
    assert (status.sidecar_image, status.release) == ("r/sidecar:2", "web")
    images = {c["name"]: c["image"] for c in injected["spec"]["containers"]}
    assert images == {status.active: "r/sidecar:2", status.standby: CONFIG.empty_image, "app": "app:1"}
    # The config default leaves no `release` in the status (the annotation of every existing pod).
    _, default_patch = plan_injection(pod, namespace="shop", config=CONFIG)
    default_pod = jsonpatch.apply_patch(pod, default_patch)
    assert "release" not in json.loads(default_pod["metadata"]["annotations"]["hotupgrade.io/status"])


LABELS = st.dictionaries(
    st.sampled_from(["app", "track", "tier"]), st.sampled_from(["web", "canary", "a"]), max_size=3
)
NAMESPACES = {"shop": {"team": "shop"}, "other": {"team": "other"}}


@st.composite
def release_docs(draw: st.DrawFn) -> list[dict[str, Any]]:
    docs = []
    for name in draw(st.lists(st.sampled_from("abcde"), unique=True, max_size=5)):
        spec: dict[str, Any] = {"priority": draw(st.integers(-1, 1))}
        if draw(st.booleans()):
            spec["namespaceSelector"] = {"matchLabels": {"team": draw(st.sampled_from(["shop", "other"]))}}
        docs.append(doc(name, f"r/sidecar:{name}", selector={"matchLabels": draw(LABELS)}, **spec))
    return docs


@settings(max_examples=200, deadline=None)
@given(release_docs(), LABELS, st.sampled_from(sorted(NAMESPACES)))
def test_the_webhook_picks_the_release_the_controller_plans_the_pod_under(
    docs: list[dict[str, Any]], labels: dict[str, str], namespace: str
) -> None:
    snap = snapshot(*docs, namespaces=NAMESPACES)
    pod = PodFacts(namespace=namespace, name="p", labels=labels, ready=True, status=STATUS)
    planned = plan_fleet(snap.releases, [pod], NAMESPACES, now=T0).owners.get(pod.key)
    assert choose_images(snap, labels=labels, namespace=namespace, config=CONFIG).release == planned
