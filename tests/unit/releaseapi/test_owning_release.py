"""Which release governs a pod: the one rule the controller's planner and the webhook's injection share."""

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from releaseapi.release import Release, ReleaseSpec, owning_release, precedence, selects
from releaseapi.selector import EVERYTHING, LabelSelector, Requirement

WEB = LabelSelector((Requirement("app", "==", frozenset({"web"})),))
CANARY = LabelSelector((Requirement("track", "In", frozenset({"canary"})),))
SHOP = LabelSelector((Requirement("team", "==", frozenset({"shop"})),))


def release(name: str, *, selector: LabelSelector = WEB, priority: int = 0, image: str = "r/s:2") -> Release:
    return Release(
        name=name, generation=1, spec=ReleaseSpec(selector=selector, image=image, priority=priority)
    )


def test_no_release_selects_a_pod_without_matching_labels() -> None:
    assert owning_release([release("fleet")], {"app": "api"}, {}) is None
    assert owning_release([], {"app": "web"}, {}) is None


def test_the_higher_priority_wins_whatever_the_names() -> None:
    fleet, canary = release("a-fleet", selector=WEB), release("z-canary", selector=CANARY, priority=10)
    labels = {"app": "web", "track": "canary"}
    assert owning_release([fleet, canary], labels, {}) == canary
    assert owning_release([canary, fleet], labels, {}) == canary
    assert owning_release([fleet, canary], {"app": "web"}, {}) == fleet


def test_equal_priorities_go_to_the_lexically_first_name() -> None:
    b, a = release("b"), release("a")
    assert owning_release([b, a], {"app": "web"}, {}) == a
    assert precedence(a) < precedence(b)


def test_the_namespace_selector_reads_namespace_labels() -> None:
    shop_only = replace(release("shop"), spec=replace(release("shop").spec, namespace_selector=SHOP))
    assert selects(shop_only, {"app": "web"}, {"team": "shop"})
    assert not selects(shop_only, {"app": "web"}, {"team": "other"})
    assert not selects(shop_only, {"app": "web"}, {})
    assert selects(release("any", selector=EVERYTHING), {}, {})


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(-2, 2)),
        min_size=1,
        max_size=6,
        unique_by=lambda t: t[0],
    ),
)
def test_the_owner_is_the_minimum_by_precedence_in_any_order(specs: list[tuple[str, int]]) -> None:
    releases = [release(name, priority=priority) for name, priority in specs]
    owner = owning_release(releases, {"app": "web"}, {})
    assert owner is not None
    assert all(precedence(owner) <= precedence(r) for r in releases)
    assert owning_release(list(reversed(releases)), {"app": "web"}, {}) == owner
