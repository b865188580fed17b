"""The CLI's pure parts: rollout batches, outcomes, rollback remedies, tables and the progress bar."""

import io
from dataclasses import replace

import pytest

from controller.cli.commands import Progress
from controller.cli.planning import (
    Outcome,
    Remedy,
    batch_finished,
    outcome,
    plan_rollout,
    rollback_remedy,
    status_row,
    summary_rows,
)
from controller.cli.podinfo import PodInfo, pod_info
from controller.cli.table import clip, render_bar, render_table
from controller.record import Phase, UpgradeRecord
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, T0, raw_pod, upgrade_record

RECORD = upgrade_record(phase=Phase.TAKING_OVER, message="standby set")


def info(
    name: str, *, record: UpgradeRecord | None = None, image: str = OLD, target: str | None = None
) -> PodInfo:
    pod = raw_pod(record=record, target=target, status=replace(STATUS, sidecar_image=image))
    pod["metadata"]["name"] = name
    return pod_info(pod)


def test_batches_respect_max_unavailable_and_skip_with_reasons() -> None:
    pods = [info(f"web-{i}") for i in (3, 1, 4, 0, 2)]
    pods.append(info("done", image=NEW))
    pods.append(info("busy", record=RECORD.moved(Phase.TAKING_OVER, now=T0, message="", to_image="x:9")))
    bare = raw_pod(status=None)
    bare["metadata"]["name"] = "plain"
    pods.append(pod_info(bare))
    failed = RECORD.moved(Phase.FAILED, now=T0, message="boom")
    pods.append(info("failed-before", record=failed, target=NEW))
    plan = plan_rollout(pods, NEW, max_unavailable=2)
    assert plan.batches == (("web-0", "web-1"), ("web-2", "web-3"), ("web-4",))
    skipped = dict(plan.skipped)
    assert skipped["done"] == "already on the image"
    assert skipped["busy"].startswith("another upgrade in flight")
    assert skipped["plain"].startswith("not injected")
    assert "hotupgrade retry" in skipped["failed-before"]


def test_interrupted_rollout_resumes_pods_in_flight_first() -> None:
    pods = [info("a"), info("b"), info("z", record=RECORD, target=NEW)]
    assert plan_rollout(pods, NEW, max_unavailable=1).batches == (("z",), ("a",), ("b",))


def test_max_unavailable_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_rollout([], NEW, max_unavailable=0)


def test_outcomes() -> None:
    assert outcome(info("a"), NEW, annotated=False) is Outcome.NOT_STARTED
    assert outcome(None, NEW, annotated=True) is Outcome.FAILED
    assert outcome(info("a", target=NEW), NEW, annotated=True) is Outcome.WAITING
    assert outcome(info("a", record=RECORD), NEW, annotated=True) is Outcome.IN_PROGRESS
    done = RECORD.moved(Phase.COMPLETED, now=T0, message="ok")
    assert outcome(info("a", record=done, image=NEW), NEW, annotated=True) is Outcome.COMPLETED
    assert outcome(info("a", image=NEW), NEW, annotated=True) is Outcome.COMPLETED
    assert outcome(
        info("a", record=RECORD.moved(Phase.FAILED, now=T0, message="x")), NEW, annotated=True
    ) is (Outcome.FAILED)
    assert batch_finished([Outcome.COMPLETED, Outcome.FAILED])
    assert not batch_finished([Outcome.COMPLETED, Outcome.IN_PROGRESS])


def test_summary_and_status_rows() -> None:
    pods = {"a": info("a", record=RECORD)}
    rows = summary_rows(["a", "gone"], pods, {"a": Outcome.IN_PROGRESS, "gone": Outcome.FAILED})
    assert rows == [("a", "in progress", "TakingOver", "standby set"), ("gone", "failed", "-", "pod gone")]
    row = status_row(info("a", record=RECORD, target=NEW), 4)
    assert row == ("a", "yes", "hotupgrade-a", "a", OLD, NEW, "4", "TakingOver #1", "standby set")
    bare = raw_pod(status=None, target=None)
    assert status_row(pod_info(bare), None)[2:8] == ("-", "-", "(not injected)", "-", "-", "-")


def test_rollback_remedies() -> None:
    assert rollback_remedy(info("a")) == (Remedy.NOTHING, None)
    assert rollback_remedy(info("a", record=RECORD)) == (Remedy.ABORT, None)
    done = RECORD.moved(Phase.COMPLETED, now=T0, message="ok")
    assert rollback_remedy(info("a", record=done, image=NEW)) == (Remedy.UPGRADE_BACK, OLD)
    failed = RECORD.moved(Phase.FAILED, now=T0, message="x")
    assert rollback_remedy(info("a", record=failed)) == (Remedy.NOTHING, None)


def test_table_and_bar() -> None:
    table = render_table(("POD", "PHASE"), [("web-1", "Completed"), ("w", "Failed")])
    assert table.splitlines() == ["POD    PHASE", "web-1  Completed", "w      Failed"]
    assert clip("abcdef", 4) == "abc…" and clip("abc", 4) == "abc"
    assert render_bar(0, 4, width=8) == "[--------] 0/4"
    assert render_bar(3, 4, width=8) == "[######--] 3/4"
    assert render_bar(0, 0, width=4) == "[####] 0/0"


def test_progress_lines_off_a_terminal_and_redraws_on_one() -> None:
    plain = io.StringIO()
    progress = Progress(plain, tty=False)
    progress.show(done=1, failed=0, total=4, batch=1, batches=2)
    progress.show(done=1, failed=0, total=4, batch=1, batches=2)  # unchanged: not repeated
    progress.show(done=2, failed=1, total=4, batch=2, batches=2)
    progress.end()
    assert plain.getvalue().splitlines() == [
        "progress: [#######-----------------------] 1/4  completed 1, failed 0, batch 1/2",
        "progress: [######################--------] 3/4  completed 2, failed 1, batch 2/2",
    ]
    tty = io.StringIO()
    drawn = Progress(tty, tty=True)
    drawn.show(done=1, failed=0, total=2, batch=1, batches=1)
    drawn.end()
    assert (
        tty.getvalue().startswith("\r[") and tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1
    )
