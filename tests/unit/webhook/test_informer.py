"""The watch-backed cache: list then watch, relist after a 410, deletions seen on relist, projections kept,
unchanged objects not reported, and an older write never overwriting a newer one. In memory: the list and
watch are plain functions here (the real API server's are exercised by the release integration tests)."""

import threading
from collections.abc import Iterator
from typing import Any

from webhook.informer import Informer, not_older, object_key


def obj(name: str, rv: int, *, label: str = "a", namespace: str | None = "shop") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(rv), "labels": {"l": label}}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta}


def project(raw: dict[str, Any]) -> str | None:
    label = str(raw["metadata"]["labels"]["l"])
    return None if label == "skip" else label


class Script:
    """Lists and watch streams handed out in order; the last watch stops the informer."""

    def __init__(self, lists: list[list[dict[str, Any]]], watches: list[list[dict[str, Any]]]) -> None:
        self.lists, self.watches = lists, watches
        self.stop = threading.Event()
        self.watched_from: list[str] = []
        self.changes: list[tuple[str, str | None, str | None]] = []

    def list_pages(self) -> list[tuple[list[dict[str, Any]], str | None]]:
        items = self.lists.pop(0)
        return [(items, str(max((int(o["metadata"]["resourceVersion"]) for o in items), default=1)))]

    def watch(self, rv: str, timeout: int) -> Iterator[dict[str, Any]]:
        self.watched_from.append(rv)
        events = self.watches.pop(0)
        if not self.watches:
            self.stop.set()
        yield from events

    def informer(self) -> Informer[str]:
        return Informer(
            "test",
            list_pages=self.list_pages,
            watch=self.watch,
            transform=project,
            on_change=lambda key, old, new: self.changes.append((key, old, new)),
            stop=self.stop,
            retry_on=(ConnectionError,),
        )


def test_list_watch_relist() -> None:
    script = Script(
        lists=[
            [obj("p0", 3), obj("p1", 4), obj("p2", 5, label="skip")],
            [obj("p1", 9, label="c"), obj("p3", 11)],  # after the 410: p0 went, p3 came
        ],
        watches=[
            [
                {"type": "MODIFIED", "object": obj("p0", 6, label="b")},
                {"type": "MODIFIED", "object": obj("p1", 7)},  # same projection: not a change
                {"type": "BOOKMARK", "object": obj("", 8)},
                {"type": "ERROR", "object": {"code": 410}},
            ],
            [{"type": "DELETED", "object": obj("p1", 12, label="c")}],
        ],
    )
    informer = script.informer()
    informer.run()
    assert informer.synced.is_set()
    assert script.watched_from == ["5", "11"]  # the list's resourceVersion, then the relist's
    assert script.changes == [
        ("shop/p0", None, "a"),
        ("shop/p1", None, "a"),
        ("shop/p0", "a", "b"),
        ("shop/p1", "a", "c"),  # relist
        ("shop/p3", None, "a"),
        ("shop/p0", "b", None),  # gone at the relist
        ("shop/p1", "c", None),  # deleted
    ]
    assert informer.items() == {"shop/p3": "a"}


def test_an_older_object_never_overwrites_a_newer_one() -> None:
    script = Script(lists=[[obj("p0", 3)]], watches=[[]])
    informer = script.informer()
    informer.run()
    informer.put(obj("p0", 10, label="written"))  # what our own write returned
    informer.put(obj("p0", 7, label="stale"))  # its watch event lags behind: ignored
    assert informer.get("shop/p0") == "written"
    informer.put(obj("p0", 12, label="skip"))  # a newer version the projection drops
    assert informer.get("shop/p0") is None
    informer.forget("shop/p0")  # nothing left to report
    assert script.changes[-1] == ("shop/p0", "written", None)


def test_helpers() -> None:
    assert object_key(obj("r", 1, namespace=None)) == "r"
    assert object_key(obj("p", 1)) == "shop/p"
    assert not_older("10", "9") and not_older("9", "9") and not not_older("9", "10")
    assert not_older("opaque", "10") and not_older("1", None)
