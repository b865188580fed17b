"""controller.kubeletbackoff: the kubelet's crash-loop back-off (v1.34.4 doBackOff, Next, GC) as seen from
the image changes the controller makes, and its annotation."""

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.keys import ANNOTATION_KUBELET_BACKOFF
from controller.kubeletbackoff import (
    MAX_ENTRIES,
    Entry,
    Memory,
    Slot,
    after_start,
    hold,
    memory_in,
    slot_of,
)
from controller.observed import containers_of

T = datetime(2026, 11, 29, 23, 0, 0, tzinfo=UTC)
A, B, EMPTY = "sidecar:a", "sidecar:b", "empty:1"


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def slot(
    *,
    image: str = EMPTY,
    restarts: int = 1,
    planned: int = 1,
    last_exit: float | None = 0.0,
    started_at: float | None = None,
) -> Slot:
    return Slot(
        container="hotupgrade-a",
        image=image,
        restarts=restarts,
        planned=planned,
        last_exit=at(last_exit) if last_exit is not None else None,
        started_at=at(started_at) if started_at is not None else None,
    )


def started(memory: Memory, target: str, now: float, **kwargs: str | float | None) -> Memory:
    """`memory` once the controller set slot a (as `kwargs` describe it) to `target` at `now`."""
    return after_start(memory, slot(**kwargs), target, at(now))  # type: ignore[arg-type]


def test_a_first_container_starts_without_next() -> None:
    # doBackOff finds no exited instance: neither a back-off nor a Next.
    memory = started(Memory(), A, 0, restarts=0, planned=0, last_exit=None)
    assert memory.entries == ()


def test_a_start_after_an_exit_registers_the_initial_back_off() -> None:
    memory = started(Memory(), A, 5, last_exit=4)
    assert memory.entries == (Entry("hotupgrade-a", A, 10.0, at(5)),)


def test_the_same_image_again_soon_after_the_last_exit_is_held() -> None:
    memory = started(Memory(), A, 0, last_exit=-1)  # A started at 0: back-off 10 s
    # Slot a ran A, was reset to the empty image at 30 (its last exit), and A comes back at 35.
    held = hold(memory, slot(last_exit=30), A, at(35))
    assert held is not None
    assert held.seconds == 10 + 2 - 5 and held.until == at(42) and held.backoff == 10.0
    assert held.started == at(0) and held.last_exit == at(30)
    assert hold(memory, slot(last_exit=30), A, at(42)) is None, "IsInBackOffSince: now - F < backoff"
    assert hold(memory, slot(last_exit=30), B, at(35)) is None, "another image is another key"


def test_each_start_within_the_window_doubles_up_to_300_s() -> None:
    memory, seen = Memory(), []
    for n in range(8):
        memory = started(memory, A, 60.0 * n, last_exit=60.0 * n - 1)
        entry = memory.entry("hotupgrade-a", A)
        assert entry is not None
        seen.append(entry.backoff)
    assert seen == [10, 20, 40, 80, 160, 300, 300, 300]


def test_an_expired_entry_starts_over() -> None:
    memory = started(Memory(), A, 0, last_exit=-1)
    memory = started(memory, A, 30, last_exit=29)  # 20 s
    # HasExpiredFunc: the last exit more than 600 s after the entry's lastUpdate (+60 s slack).
    assert hold(memory, slot(last_exit=30 + 661), A, at(30 + 662)) is None
    again = started(memory, A, 30 + 662, last_exit=30 + 661)
    assert again.entry("hotupgrade-a", A) == Entry("hotupgrade-a", A, 10.0, at(692))
    # Within the slack the model keeps the longer back-off: the kubelet's lastUpdate may be later.
    kept = started(memory, A, 30 + 650, last_exit=30 + 649)
    assert kept.entry("hotupgrade-a", A) == Entry("hotupgrade-a", A, 40.0, at(680))


def test_entries_the_kubelet_dropped_are_pruned_and_never_hold() -> None:
    memory = started(Memory(), A, 0, last_exit=-1)
    assert hold(memory, slot(last_exit=655), A, at(659)) is not None, "GC'd only after 600 s + slack"
    assert hold(memory, slot(last_exit=659), A, at(661)) is None
    pruned = started(memory, B, 661, last_exit=660)
    assert [e.image for e in pruned.entries] == [B]


def test_no_exited_instance_means_no_back_off() -> None:
    memory = started(Memory(), A, 0, last_exit=-1)
    assert hold(memory, slot(last_exit=None), A, at(1)) is None


def test_unplanned_restarts_count_as_the_kubelets_own_starts_of_the_current_image() -> None:
    # Slot a runs A (started at 0); it crashed twice since (restartCount 3, the controller caused 1).
    memory = started(Memory(), A, 0, last_exit=-1)
    memory = started(memory, EMPTY, 100, image=A, restarts=3, planned=1, last_exit=90)
    entry = memory.entry("hotupgrade-a", A)
    assert entry == Entry("hotupgrade-a", A, 40.0, at(100)), "two Nexts, stamped as late as possible"
    assert memory.crashes == {"hotupgrade-a": 2}
    # Counted once: the next start sees no new crash.
    memory = started(memory, A, 200, image=EMPTY, restarts=4, planned=2, last_exit=100)
    assert memory.entry("hotupgrade-a", A) == Entry("hotupgrade-a", A, 80.0, at(200))
    assert memory.crashes == {"hotupgrade-a": 2}


def test_the_running_instance_moves_its_entry_to_its_start() -> None:
    # The start the controller asked for at 0 happened only at 40 (held by something the model missed):
    # the kubelet's lastUpdate is no later than that container's startedAt, the stamp to keep.
    memory = started(Memory(), A, 0, last_exit=-1)
    memory = started(memory, EMPTY, 100, image=A, started_at=40, last_exit=-1, restarts=1, planned=1)
    assert memory.entry("hotupgrade-a", A) == Entry("hotupgrade-a", A, 10.0, at(40))


def test_the_annotation_round_trips_and_a_bad_one_counts_as_empty() -> None:
    memory = started(started(Memory(), A, 0, last_exit=-1), B, 5, last_exit=4)
    assert memory_in({ANNOTATION_KUBELET_BACKOFF: memory.render()}) == memory
    for bad in ("x", "[]", '{"starts": [{"container": "a"}]}', '{"starts": 1}', '{"crashes": []}'):
        assert memory_in({ANNOTATION_KUBELET_BACKOFF: bad}) == Memory(), bad
    assert memory_in({}) == Memory()


def test_the_annotation_stays_small() -> None:
    memory = Memory()
    for n in range(MAX_ENTRIES + 10):
        memory = started(memory, f"sidecar:{n}", n, last_exit=n - 0.5)
    assert len(memory.entries) == MAX_ENTRIES
    assert memory.entries[-1].image == f"sidecar:{MAX_ENTRIES + 9}", "the newest kept"
    assert len(memory.render()) < 100 * MAX_ENTRIES


def test_slot_of_reads_the_newest_exit_from_the_pod_status() -> None:
    pod: dict[str, Any] = {
        "metadata": {"annotations": {"hotupgrade.io/planned-restarts": '{"hotupgrade-a": 2}'}},
        "spec": {"containers": [{"name": "hotupgrade-a", "image": A}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "hotupgrade-a",
                    "restartCount": 3,
                    "state": {"running": {"startedAt": "2026-11-29T23:00:10Z"}},
                    "lastState": {
                        "terminated": {"containerID": "c://1", "finishedAt": "2026-11-29T23:00:09Z"}
                    },
                }
            ]
        },
    }
    [container] = containers_of(pod).values()
    got = slot_of(container, pod["metadata"]["annotations"])
    assert got == Slot("hotupgrade-a", A, restarts=3, planned=2, last_exit=at(9), started_at=at(10))
    # A terminated container is its own newest exited instance.
    status = pod["status"]["containerStatuses"][0]
    status["state"] = {"terminated": {"reason": "Error", "exitCode": 1, "finishedAt": "2026-11-29T23:00:20Z"}}
    [container] = containers_of(pod).values()
    assert slot_of(container, {}).last_exit == at(20)
