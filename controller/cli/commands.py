"""The I/O half of `hotupgrade`: list pods, write annotations, poll, print. Decisions live in planning.

Ctrl-C only sets a flag that the loops check between API calls, so an interrupted rollout never
leaves a request half-sent, and the summary lists exactly which pods were annotated.
"""

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import tenacity

from controller.agents import AgentClient
from controller.cli.planning import (
    STATUS_HEADERS,
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
from controller.cli.table import render_bar, render_table
from controller.errors import TransientError
from controller.keys import ANNOTATION_ABORT, ANNOTATION_RETRY, ANNOTATION_TARGET_IMAGE
from controller.kube import Kube
from controller.record import Phase

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


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
def list_pods(kube: Kube, selection: Selection) -> dict[str, PodInfo]:
    raw, _ = kube.list_pods(selection.namespace, label_selector=selection.selector)
    pods = {info.name: info for info in map(pod_info, raw)}
    if selection.names:
        return {name: pods[name] for name in selection.names if name in pods}
    return pods


@_transient
def annotate(kube: Kube, pod: PodInfo, key: str, value: str) -> None:
    kube.merge_patch_pod(pod.namespace, pod.name, {"metadata": {"annotations": {key: value}}})


def token(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> str:
    """A fresh value for the retry/abort annotations (any change is what the controller reacts to)."""
    return now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Progress:
    """A redrawn bar on a terminal, one line per change otherwise (logs, CI)."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.last = ""

    def show(self, *, done: int, failed: int, total: int, batch: int, batches: int) -> None:
        line = (
            f"{render_bar(done + failed, total)}  completed {done}, failed {failed}, batch {batch}/{batches}"
        )
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.out.write("\r" + line)
        else:
            self.out.write("progress: " + line + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.out.flush()


@dataclass
class RolloutOptions:
    image: str
    max_unavailable: int = 1
    pause_on_failure: bool = False
    poll_interval: float = 2.0
    batch_timeout: float = 1200.0


def rollout(
    kube: Kube,
    selection: Selection,
    options: RolloutOptions,
    *,
    out: TextIO,
    tty: bool,
    stop: threading.Event,
) -> int:
    """Annotate pods batch by batch, wait for each batch, print a summary; see planning for the rules."""
    pods = list_pods(kube, selection)
    plan = plan_rollout(pods.values(), options.image, max_unavailable=options.max_unavailable)
    names = plan.pods
    out.write(
        f"rollout of {options.image} to {len(names)} pod(s) in {len(plan.batches)} batch(es) "
        f"of at most {options.max_unavailable}; {len(plan.skipped)} skipped\n"
    )
    for name, why in plan.skipped:
        out.write(f"  skip {name}: {why}\n")
    annotated: set[str] = set()
    outcomes: dict[str, Outcome] = {}
    progress = Progress(out, tty=tty)
    stopped_because = ""
    for index, batch in enumerate(plan.batches, start=1):
        if stop.is_set():
            break
        for name in batch:
            if stop.is_set():
                break
            pod = pods[name]
            if pod.target != options.image:
                annotate(kube, pod, ANNOTATION_TARGET_IMAGE, options.image)
            annotated.add(name)
        deadline = time.monotonic() + options.batch_timeout
        while True:
            pods = list_pods(kube, selection)
            outcomes = {n: outcome(pods.get(n), options.image, annotated=n in annotated) for n in names}
            done = sum(o is Outcome.COMPLETED for o in outcomes.values())
            failed = sum(o is Outcome.FAILED for o in outcomes.values())
            progress.show(done=done, failed=failed, total=len(names), batch=index, batches=len(plan.batches))
            if batch_finished([outcomes[n] for n in batch if n in annotated]) or stop.is_set():
                break
            if time.monotonic() > deadline:
                stopped_because = f"batch {index} did not finish within {options.batch_timeout:.0f}s"
                break
            stop.wait(options.poll_interval)
        if stopped_because:
            break
        if options.pause_on_failure and any(outcomes[n] is Outcome.FAILED for n in batch):
            stopped_because = f"paused after batch {index}: an upgrade failed (--pause-on-failure)"
            break
    progress.end()
    if stop.is_set():
        stopped_because = (
            "interrupted: pods marked 'waiting'/'in progress' are still upgraded by the controller"
        )
    out.write(render_table(("POD", "RESULT", "PHASE", "MESSAGE"), summary_rows(names, pods, outcomes)) + "\n")
    if stopped_because:
        out.write(stopped_because + "\n")
    if stop.is_set():
        return EXIT_INTERRUPTED
    ok = all(outcomes.get(n) is Outcome.COMPLETED for n in names)
    return EXIT_OK if ok else EXIT_FAILED


def status(kube: Kube, selection: Selection, *, out: TextIO, agents: AgentClient | None) -> int:
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
    return EXIT_OK


def _act_on_each(
    kube: Kube,
    selection: Selection,
    decide: Callable[[PodInfo], tuple[str, tuple[str, str] | None]],
    *,
    out: TextIO,
) -> int:
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
    return EXIT_FAILED if missing else EXIT_OK


def abort(kube: Kube, selection: Selection, *, out: TextIO) -> int:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        if not pod.in_flight:
            return "nothing in flight", None
        return "abort requested", (ANNOTATION_ABORT, value)

    return _act_on_each(kube, selection, decide, out=out)


def retry(kube: Kube, selection: Selection, *, out: TextIO) -> int:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        if pod.record is None or pod.record.phase is not Phase.FAILED:
            return "last upgrade did not fail", None
        return f"retry of {pod.record.to_image} requested", (ANNOTATION_RETRY, value)

    return _act_on_each(kube, selection, decide, out=out)


def rollback(kube: Kube, selection: Selection, *, out: TextIO) -> int:
    value = token()

    def decide(pod: PodInfo) -> tuple[str, tuple[str, str] | None]:
        remedy, image = rollback_remedy(pod)
        if remedy is Remedy.ABORT:
            return "upgrade in flight: abort requested", (ANNOTATION_ABORT, value)
        if remedy is Remedy.UPGRADE_BACK and image is not None:
            return f"upgrade back to {image} requested", (ANNOTATION_TARGET_IMAGE, image)
        return str(remedy), None

    return _act_on_each(kube, selection, decide, out=out)
