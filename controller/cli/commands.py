"""The I/O half of `hotupgrade`: list pods, write annotations, poll, print. Decisions live in planning.

Ctrl-C only sets a flag that the loops check between API calls, so an interrupted rollout never
leaves a request half-sent, and the summary lists exactly which pods were annotated.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import tenacity

from controller.agents import AgentClient
from controller.cli.exitcodes import ExitCode
from controller.cli.planning import (
    STATUS_HEADERS,
    Limits,
    Outcome,
    Remedy,
    decide,
    outcome,
    plan_rollout,
    rollback_remedy,
    status_row,
    summary_rows,
)
from controller.cli.podinfo import PodInfo, pod_info
from controller.cli.table import render_bar, render_table
from controller.disruption import Budget, InvalidBudgetError, parse_budget
from controller.errors import TransientError
from controller.keys import ANNOTATION_ABORT, ANNOTATION_RETRY, ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.record import Phase
from controller.rollout import PodFacts, PodState, pod_facts, pod_state

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Pods named explicitly, or by label selector (all pods of the namespace when both are empty)."""

    namespace: str
    names: tuple[str, ...] = ()
    selector: str | None = None


# Both calls are idempotent, so a blip of the API server (a restart, a 503) is retried, not fatal.
_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(TransientError),
    stop=tenacity.stop_after_delay(60),
    wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
    reraise=True,
)


@_transient
def list_raw(kube: Kube, selection: Selection) -> list[dict[str, Any]]:
    """The selected pods as raw documents: by label selector, then by name if names were given."""
    raw, _ = kube.list_pods(selection.namespace, label_selector=selection.selector)
    if selection.names:
        wanted = set(selection.names)
        return [p for p in raw if (p.get("metadata") or {}).get("name") in wanted]
    return raw


def list_pods(kube: Kube, selection: Selection) -> dict[str, PodInfo]:
    pods = {info.name: info for info in map(pod_info, list_raw(kube, selection))}
    if selection.names:
        return {name: pods[name] for name in selection.names if name in pods}
    return pods


@_transient
def annotate_pod(kube: Kube, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
    kube.merge_patch_pod(namespace, name, {"metadata": {"annotations": dict(annotations)}})


def annotate(kube: Kube, pod: PodInfo, key: str, value: str) -> None:
    annotate_pod(kube, pod.namespace, pod.name, {key: value})


def token(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """A fresh value for the retry/abort annotations (any change is what the controller reacts to)."""
    return now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Progress:
    """A redrawn bar on a terminal, one line per change otherwise (logs, CI)."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.last = ""

    def show(
        self, *, done: int, failed: int, upgrading: int, total: int, waiting: Sequence[str] = ()
    ) -> None:
        line = f"{render_bar(done + failed, total)}  completed {done}, failed {failed}, upgrading {upgrading}"
        if waiting:
            line += "; waiting: " + "; ".join(waiting)
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.out.write("\r\x1b[K" + line)  # erase the previous, possibly longer, line
        else:
            self.out.write("progress: " + line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.out.flush()


DEFAULT_MAX_FAILURES = 1


@dataclass
class RolloutOptions:
    """`max_failures` 0: never stop for failures; `progress_deadline`: seconds without a pod finishing."""

    image: str
    max_unavailable: int = 1
    max_failures: int = DEFAULT_MAX_FAILURES
    poll_interval: float = 2.0
    progress_deadline: float = 1200.0


@_transient
def list_budgets(kube: Kube, namespace: str) -> list[Budget]:
    """The namespace's PodDisruptionBudgets; one the parser refuses is reported and ignored."""
    budgets = []
    for raw in kube.list_pod_disruption_budgets(namespace):
        try:
            budgets.append(parse_budget(raw))
        except InvalidBudgetError as exc:
            name = (raw.get("metadata") or {}).get("name")
            _log.warning("event=pdb-unreadable pdb=%s error=%s", name, exc)
    return budgets


@dataclass(frozen=True)
class World:
    """One round's read of the namespace: the selected pods, every pod (for PDBs), the PDBs."""

    selection: dict[str, PodFacts]
    everyone: list[PodFacts]
    budgets: list[Budget]


def observe(kube: Kube, selection: Selection) -> World:
    """The selection, and, when the namespace has PDBs, all its pods (a PDB may reach beyond it)."""
    chosen = {f.name: f for f in map(pod_facts, list_raw(kube, selection))}
    budgets = list_budgets(kube, selection.namespace)
    everyone = list(chosen.values())
    if budgets:
        everyone = [pod_facts(p) for p in list_raw(kube, Selection(namespace=selection.namespace))]
    return World(selection=chosen, everyone=everyone, budgets=budgets)


def rollout(
    kube: Kube,
    selection: Selection,
    options: RolloutOptions,
    *,
    out: TextIO,
    tty: bool,
    stop: threading.Event,
) -> ExitCode:
    """Start pods as the budgets allow until all are done, `max_failures` failed, or the deadline;
    see planning.decide for the rules. Exit 0 only if every planned pod completed."""
    limits = Limits(options.image, max_unavailable=options.max_unavailable, max_failures=options.max_failures)
    world = observe(kube, selection)
    plan = plan_rollout(world.selection.values(), options.image)
    stops = (
        f"stop after {options.max_failures} failure(s)" if options.max_failures else "never stop for failures"
    )
    out.write(
        f"rollout of {options.image} to {len(plan.pods)} pod(s), at most {options.max_unavailable} "
        f"unavailable at once, {stops}; {len(plan.skipped)} skipped\n"
    )
    for name, why in plan.skipped:
        out.write(f"  skip {name}: {why}\n")
    for budget in world.budgets:
        covered = [n for n in plan.pods if budget.selects(world.selection[n])]
        if covered:
            out.write(
                f"  PodDisruptionBudget {budget.name} ({budget.describe()}) covers {len(covered)} of them\n"
            )
    # Upgrades to the image already under way (an interrupted run, a hand-set target) are this run's
    # too: they use its budget, and a failure among them counts against --max-failures.
    started = {n for n in plan.pods if pod_state(world.selection[n], options.image) is PodState.UPGRADING}
    progress = Progress(out, tty=tty)
    stopped_because = ""
    deadline = time.monotonic() + options.progress_deadline
    settled = -1
    while not stop.is_set():
        tick = decide(plan, world.selection, world.budgets, world.everyone, limits=limits, started=started)
        for start in tick.starts:
            if stop.is_set():
                break
            annotations = {ANNOTATION_TARGET_IMAGE: options.image}
            if start.retry:
                annotations[ANNOTATION_RETRY] = token()
            annotate_pod(kube, selection.namespace, start.name, annotations)
            started.add(start.name)
            _log.info("event=rollout-start pod=%s image=%s retry=%s", start.name, options.image, start.retry)
        outcomes = {
            n: outcome(world.selection.get(n), options.image, started=n in started) for n in plan.pods
        }
        done = sum(o is Outcome.COMPLETED for o in outcomes.values())
        failed = sum(o is Outcome.FAILED for o in outcomes.values())
        progress.show(
            done=done,
            failed=failed,
            upgrading=len(tick.in_flight),
            total=len(plan.pods),
            waiting=tick.waiting,
        )
        if tick.finished:
            stopped_because = tick.stopped or ""
            break
        if done + failed != settled:  # a pod finished: the deadline counts from the last progress
            settled = done + failed
            deadline = time.monotonic() + options.progress_deadline
        elif time.monotonic() > deadline:
            why = "; ".join(tick.waiting) or f"{len(tick.in_flight)} upgrade(s) still in flight"
            stopped_because = f"no pod finished within {options.progress_deadline:.0f}s ({why})"
            break
        stop.wait(options.poll_interval)
        world = observe(kube, selection)
    progress.end()
    outcomes = {n: outcome(world.selection.get(n), options.image, started=n in started) for n in plan.pods}
    if stop.is_set():
        stopped_because = (
            "interrupted: pods marked 'waiting'/'in progress' are still upgraded by the controller"
        )
    out.write(
        render_table(
            ("POD", "RESULT", "PHASE", "MESSAGE"), summary_rows(plan.pods, world.selection, outcomes)
        )
        + "\n"
    )
    failures = [(n, world.selection[n]) for n in plan.pods if outcomes[n] is Outcome.FAILED]
    if failures:
        out.write("why they failed (`kubectl describe pod` shows the Events):\n")
        for name, pod in failures:
            out.write(f"  {name}: {pod.record.message if pod.record else '-'}\n")
    if stopped_because:
        out.write(stopped_because + "\n")
    if stop.is_set():
        return ExitCode.INTERRUPTED
    ok = all(outcomes[n] is Outcome.COMPLETED for n in plan.pods)
    return ExitCode.OK if ok else ExitCode.FAILED


def status(kube: Kube, selection: Selection, *, out: TextIO, agents: AgentClient | None) -> ExitCode:
    """Print one row per pod; the epoch comes from the active slot's agent when it can be reached."""
    rows = []
    for pod in sorted(list_pods(kube, selection).values(), key=lambda p: p.name):
        epoch = None
        slot = pod.active_slot
        if agents is not None and pod.pod_ip and slot:
            view = agents.fetch(pod.pod_ip, slot)
            epoch = view.epoch if view.reachable else None
        rows.append(status_row(pod, epoch))
    out.write(render_table(STATUS_HEADERS, rows) + "\n")
    return ExitCode.OK


def _act_on_each(
    kube: Kube,
    selection: Selection,
    decide: Callable[[PodInfo], tuple[str, tuple[str, str] | None]],
    *,
    out: TextIO,
) -> ExitCode:
    """For each selected pod: `decide` -> (what to print, optional annotation to write)."""
    pods = list_pods(kube, selection)
    missing = [n for n in selection.names if n not in pods]
    rows: list[Sequence[str]] = []
    for pod in sorted(pods.values(), key=lambda p: p.name):
        said, write = decide(pod)
        if write is not None:
            annotate(kube, pod, *write)
        rows.append((pod.name, said))
    rows += [(name, "not found") for name in missing]
    out.write(render_table(("POD", "ACTION"), rows, max_width=200) + "\n")
    return ExitCode.FAILED if missing else ExitCode.OK


def abort(kube: Kube, selection: Selection, *, out: TextIO) -> ExitCode:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        if not pod.in_flight:
            return "nothing in flight", None
        return "abort requested", (ANNOTATION_ABORT, value)

    return _act_on_each(kube, selection, decide, out=out)


def retry(kube: Kube, selection: Selection, *, out: TextIO) -> ExitCode:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        if pod.record is None or pod.record.phase is not Phase.FAILED:
            return "last upgrade did not fail", None
        return f"retry of {pod.record.to_image} requested", (ANNOTATION_RETRY, value)

    return _act_on_each(kube, selection, decide, out=out)


def rollback(kube: Kube, selection: Selection, *, out: TextIO) -> ExitCode:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        remedy, image = rollback_remedy(pod)
        if remedy is Remedy.ABORT:
            return "upgrade in flight: abort requested", (ANNOTATION_ABORT, value)
        if remedy is Remedy.UPGRADE_BACK and image is not None:
            return f"upgrade back to {image} requested", (ANNOTATION_TARGET_IMAGE, image)
        return str(remedy), None

    return _act_on_each(kube, selection, decide, out=out)
