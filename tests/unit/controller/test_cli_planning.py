"""The CLI's pure parts: rollout rounds (budgets, PDBs, failures), outcomes, remedies, tables, progress."""

import io
from dataclasses import replace
from typing import Any

import pytest

from controller.cli.commands import Progress
from controller.cli.planning import (
    Limits,
    Outcome,
    Remedy,
    Start,
    Tick,
    decide,
    outcome,
    plan_rollout,
    rollback_remedy,
    status_row,
    summary_rows,
)
from controller.cli.podinfo import PodInfo, pod_info
from controller.cli.table import clip, render_bar, render_table
from controller.disruption import Budget, parse_budget
from controller.record import Phase, UpgradeRecord
from controller.rollout import PodFacts
from tests.unit.controller.podfixtures import NEW, OLD, STATUS, T0, raw_pod, upgrade_record

RECORD = upgrade_record(phase=Phase.TAKING_OVER, message="standby set")
FAILED = RECORD.moved(Phase.FAILED, now=T0, message="take-over timed out")
BROKEN = "registry.local/hotupgrade-sidecar:broken"


def info(
    name: str, *, record: UpgradeRecord | None = None, image: str = OLD, target: str | None = None
) -> PodInfo:
    pod = raw_pod(record=record, target=target, status=replace(STATUS, sidecar_image=image))
    pod["metadata"]["name"] = name
    return pod_info(pod)


def facts(
    name: str,
    *,
    record: UpgradeRecord | None = None,
    image: str = OLD,
    target: str | None = None,
    ready: bool = True,
    app: str = "web",
    retry: str | None = None,
) -> PodFacts:
    return PodFacts(
        namespace="shop",
        name=name,
        labels={"app": app},
        ready=ready,
        status=replace(STATUS, sidecar_image=image),
        record=record,
        target=target,
        retry=retry,
    )


def fleet(n: int, **changes: Any) -> dict[str, PodFacts]:
    return {f"web-{i}": facts(f"web-{i}", **changes) for i in range(n)}


def tick(
    pods: dict[str, PodFacts],
    *,
    budgets: tuple[Budget, ...] = (),
    others: tuple[PodFacts, ...] = (),
    started: frozenset[str] = frozenset(),
    image: str = NEW,
    **limits: Any,
) -> Tick:
    plan = plan_rollout(pods.values(), image)
    everyone = [*pods.values(), *others]
    return decide(plan, pods, budgets, everyone, limits=Limits(image, **limits), started=started)


def names(t: Tick) -> list[str]:
    return [s.name for s in t.starts]


def queued(pod: PodFacts, image: str = NEW) -> PodFacts:
    """`pod` after the CLI wrote its target (the controller has not acted yet)."""
    return replace(pod, target=image)


def completed(pod: PodFacts, image: str = NEW) -> PodFacts:
    record = RECORD.moved(Phase.COMPLETED, now=T0, message="ok", to_image=image)
    return replace(pod, target=image, record=record, status=replace(STATUS, sidecar_image=image))


def failed(pod: PodFacts, image: str = NEW, **changes: Any) -> PodFacts:
    return replace(pod, target=image, record=replace(FAILED, to_image=image, **changes))


def pdb(spec: dict[str, Any], name: str = "web-pdb", app: str = "web") -> Budget:
    return parse_budget(
        {
            "metadata": {"namespace": "shop", "name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
        }
    )


# --- the plan --------------------------------------------------------------------------------------------


def test_plan_orders_by_name_and_skips_with_reasons() -> None:
    pods = [facts(f"web-{i}") for i in (3, 1, 4, 0, 2)]
    pods.append(facts("done", image=NEW))
    pods.append(facts("busy", record=RECORD.moved(Phase.TAKING_OVER, now=T0, message="", to_image="x:9")))
    pods.append(replace(facts("plain"), status=None))
    pods.append(replace(facts("leaving"), deleting=True))
    pods.append(failed(facts("failed-before")))
    plan = plan_rollout(pods, NEW)
    assert plan.pods == ("failed-before", "web-0", "web-1", "web-2", "web-3", "web-4")
    skipped = dict(plan.skipped)
    assert skipped["done"] == "already on the image"
    assert skipped["busy"].startswith("another upgrade in flight (to x:9)")
    assert skipped["plain"].startswith("not injected")
    assert skipped["leaving"] == "terminating"
    assert "failed-before" not in skipped, "a re-run retries pods whose upgrade to the image failed"


def test_interrupted_rollout_resumes_pods_in_flight_first() -> None:
    pods = [facts("a"), facts("b"), facts("z", record=RECORD, target=NEW)]
    assert plan_rollout(pods, NEW).pods == ("z", "a", "b")


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Limits(NEW, max_unavailable=0)
    with pytest.raises(ValueError, match="negative"):
        Limits(NEW, max_failures=-1)


# --- max-unavailable ------------------------------------------------------------------------------------


def test_starts_up_to_max_unavailable_then_waits_for_the_in_flight() -> None:
    pods = fleet(5)
    first = tick(pods, max_unavailable=2)
    assert names(first) == ["web-0", "web-1"] and not first.finished
    pods |= {n: queued(pods[n]) for n in names(first)}
    second = tick(pods, max_unavailable=2, started=frozenset(names(first)))
    assert names(second) == [] and second.in_flight == ("web-0", "web-1")
    assert second.waiting == ("--max-unavailable 2: 2 of 5 selected pod(s) not Ready or upgrading",)
    pods["web-0"] = completed(pods["web-0"])
    third = tick(pods, max_unavailable=2, started=frozenset(names(first)))
    assert names(third) == ["web-2"]


def test_a_pod_counts_until_its_upgrade_ends_not_only_until_the_take_over() -> None:
    """Unlike a SidecarRelease, the CLI does not overlap drains: the old container's reset may still
    make the pod NotReady, and --max-unavailable (like a PDB) must hold through that."""
    pods = fleet(2)
    pods["web-0"] = replace(pods["web-0"], target=NEW, record=replace(RECORD, phase=Phase.DRAINING))
    t = tick(pods, max_unavailable=1, started=frozenset({"web-0"}))
    assert names(t) == [] and t.in_flight == ("web-0",)
    pods["web-0"] = completed(pods["web-0"])
    assert names(tick(pods, max_unavailable=1, started=frozenset({"web-0"}))) == ["web-1"]


def test_unready_pods_use_the_budget_and_are_not_started() -> None:
    pods = fleet(4)
    pods["web-1"] = replace(pods["web-1"], ready=False)
    t = tick(pods, max_unavailable=1)
    assert names(t) == [] and not t.finished
    assert t.waiting == (
        "--max-unavailable 1: 1 of 4 selected pod(s) not Ready or upgrading",
        "not Ready, so not upgraded until they are: web-1",
    )
    assert names(tick(pods, max_unavailable=2)) == ["web-0"]


def test_an_unready_pod_already_on_the_image_also_counts() -> None:
    pods = fleet(3)
    pods["web-0"] = replace(completed(pods["web-0"]), ready=False)
    assert names(tick(pods, max_unavailable=1)) == []


def test_hand_set_targets_count_as_in_flight() -> None:
    """A per-pod annotation to another image, already acted on, keeps its pod out and uses the budget."""
    pods = fleet(3)
    pods["web-2"] = replace(pods["web-2"], target="x:9", record=replace(RECORD, to_image="x:9"))
    t = tick(pods, max_unavailable=1)
    assert names(t) == [] and not t.finished
    assert t.waiting == ("--max-unavailable 1: 1 of 3 selected pod(s) not Ready or upgrading",)
    assert names(tick(pods, max_unavailable=2)) == ["web-0"]


def test_a_queued_target_elsewhere_is_retargeted_at_no_cost() -> None:
    pods = fleet(2)
    pods["web-1"] = queued(pods["web-1"], image="x:9")
    assert names(tick(pods, max_unavailable=1)) == ["web-1"]


# --- PodDisruptionBudgets --------------------------------------------------------------------------------


def test_a_pdb_tighter_than_max_unavailable_wins_and_is_named() -> None:
    pods = fleet(4)
    t = tick(pods, max_unavailable=3, budgets=(pdb({"minAvailable": 3}),))
    assert names(t) == ["web-0"]
    pods["web-0"] = queued(pods["web-0"])
    t = tick(pods, max_unavailable=3, budgets=(pdb({"minAvailable": 3}),), started=frozenset({"web-0"}))
    assert names(t) == []
    assert t.waiting == (
        "PodDisruptionBudget web-pdb (minAvailable 3): 3 of 4 pod(s) healthy, 3 must stay healthy, "
        "1 Ready pod(s) upgrading count as out of service: 0 more may go out of service",
    )


def test_pods_outside_the_selection_use_the_pdb_too() -> None:
    """The PDB covers a pod the rollout does not select, and that pod is not Ready."""
    pods = fleet(3)
    outsider = facts("web-canary", ready=False)
    t = tick(pods, max_unavailable=3, budgets=(pdb({"maxUnavailable": 1}),), others=(outsider,))
    assert names(t) == [] and "1 more" not in t.waiting[0] and not t.finished
    assert names(
        tick(pods, max_unavailable=3, budgets=(pdb({"maxUnavailable": 2}),), others=(outsider,))
    ) == ["web-0"]


def test_a_pdb_blocks_only_its_own_pods() -> None:
    pods = fleet(2) | {"api-0": facts("api-0", app="api")}
    budgets = (pdb({"maxUnavailable": 0}), pdb({"maxUnavailable": 1}, name="api-pdb", app="api"))
    t = tick(pods, max_unavailable=2, budgets=budgets)
    assert names(t) == ["api-0"]
    assert len(t.waiting) == 1 and t.waiting[0].startswith("PodDisruptionBudget web-pdb (maxUnavailable 0)")


def test_two_pdbs_over_one_pod_both_must_allow() -> None:
    pods = fleet(3)
    everything = parse_budget(
        {"metadata": {"namespace": "shop", "name": "all"}, "spec": {"selector": {}, "minAvailable": 3}}
    )
    t = tick(pods, max_unavailable=3, budgets=(pdb({"maxUnavailable": 2}), everything))
    assert names(t) == [] and t.waiting[0].startswith("PodDisruptionBudget all (minAvailable 3)")


# --- failures -------------------------------------------------------------------------------------------


def test_stops_after_max_failures_by_default_and_names_the_pods() -> None:
    pods = fleet(4)
    pods["web-0"] = failed(pods["web-0"], image=BROKEN)
    t = tick(pods, image=BROKEN, max_unavailable=2, started=frozenset({"web-0"}))
    assert names(t) == [] and t.finished and t.failed == ("web-0",)
    assert t.stopped is not None and "1 upgrade(s) failed (web-0), --max-failures is 1" in t.stopped


def test_in_flight_upgrades_finish_before_a_stopped_rollout_ends() -> None:
    pods = fleet(3)
    pods["web-0"] = failed(pods["web-0"], image=BROKEN)
    pods["web-1"] = queued(pods["web-1"], image=BROKEN)
    t = tick(pods, image=BROKEN, max_unavailable=2, started=frozenset({"web-0", "web-1"}))
    assert t.stopped is not None and not t.finished and t.in_flight == ("web-1",) and names(t) == []


def test_max_failures_zero_never_stops() -> None:
    pods = fleet(3)
    pods["web-0"] = failed(pods["web-0"], image=BROKEN)
    t = tick(pods, image=BROKEN, max_failures=0, started=frozenset({"web-0"}))
    assert t.stopped is None and names(t) == ["web-1"]
    assert names(tick(pods, image=BROKEN, max_failures=2, started=frozenset({"web-0"}))) == ["web-1"]


def test_a_rerun_retries_failed_pods_first_and_skips_pods_on_the_image() -> None:
    """The image was fixed (same tag): failures of the previous run do not count, and are retried."""
    pods = fleet(4)
    pods["web-0"] = completed(pods["web-0"])
    pods["web-1"] = failed(pods["web-1"])
    plan = plan_rollout(pods.values(), NEW)
    assert plan.pods == ("web-1", "web-2", "web-3") and dict(plan.skipped)["web-0"] == "already on the image"
    t = tick(pods, max_unavailable=1)
    assert t.starts == (Start("web-1", retry=True),) and t.stopped is None
    # Once the retry annotation is on the pod the controller's next attempt is in flight, not a failure.
    pods["web-1"] = replace(pods["web-1"], retry="t1")
    t = tick(pods, max_unavailable=1, started=frozenset({"web-1"}))
    assert t.in_flight == ("web-1",) and t.failed == ()
    assert outcome(pods["web-1"], NEW, started=True) is Outcome.WAITING
    picked_up = replace(pods["web-1"], record=replace(RECORD, attempt=2, retry_token="t1"))
    assert outcome(picked_up, NEW, started=True) is Outcome.IN_PROGRESS


def test_a_pod_the_controller_declines_is_not_started_again() -> None:
    pods = fleet(1)
    t = tick(pods, started=frozenset({"web-0"}))
    assert names(t) == [] and t.finished


def test_finished_when_everything_completed() -> None:
    pods = {n: completed(p) for n, p in fleet(2).items()}
    t = tick(pods)
    assert t.finished and t.stopped is None and names(t) == []


def test_outcomes() -> None:
    pod = facts("a")
    assert outcome(pod, NEW, started=False) is Outcome.NOT_STARTED
    assert outcome(None, NEW, started=True) is Outcome.GONE
    assert outcome(replace(pod, deleting=True), NEW, started=True) is Outcome.GONE
    assert outcome(queued(pod), NEW, started=True) is Outcome.WAITING
    assert outcome(replace(pod, record=RECORD, target=NEW), NEW, started=True) is Outcome.IN_PROGRESS
    assert outcome(replace(pod, record=RECORD, target=NEW), NEW, started=False) is Outcome.IN_PROGRESS
    assert outcome(completed(pod), NEW, started=True) is Outcome.COMPLETED
    assert outcome(facts("a", image=NEW), NEW, started=False) is Outcome.COMPLETED
    assert outcome(failed(pod), NEW, started=True) is Outcome.FAILED
    assert outcome(failed(pod), NEW, started=False) is Outcome.NOT_STARTED


def test_summary_and_status_rows() -> None:
    pods = {"a": facts("a", record=RECORD), "f": failed(facts("f"))}
    outcomes = {"a": Outcome.IN_PROGRESS, "f": Outcome.FAILED, "gone": Outcome.GONE}
    rows = summary_rows(["a", "f", "gone"], pods, outcomes)
    assert rows == [
        ("a", "in progress", "TakingOver", "standby set"),
        ("f", "failed", "Failed", "take-over timed out"),
        ("gone", "pod gone", "-", "pod gone"),
    ]
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
    progress.show(done=1, failed=0, upgrading=1, total=4)
    progress.show(done=1, failed=0, upgrading=1, total=4)  # unchanged: not repeated
    progress.show(done=2, failed=1, upgrading=0, total=4, waiting=("PodDisruptionBudget web: 0 more",))
    progress.end()
    assert plain.getvalue().splitlines() == [
        "progress: [#######-----------------------] 1/4  completed 1, failed 0, upgrading 1",
        "progress: [######################--------] 3/4  completed 2, failed 1, upgrading 0; "
        "waiting: PodDisruptionBudget web: 0 more",
    ]
    tty = io.StringIO()
    drawn = Progress(tty, tty=True)
    drawn.show(done=1, failed=0, upgrading=0, total=2)
    drawn.end()
    assert (
        tty.getvalue().startswith("\r\x1b[K[")
        and tty.getvalue().endswith("\n")
        and tty.getvalue().count("\n") == 1
    )
