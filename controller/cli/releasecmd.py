"""The SidecarRelease commands of `hotupgrade`: `status [NAME...]` prints the views of
controller.cli.releaseview; `rollout`, `pause`, `resume` and `rollback NAME` edit the spec
(controller.cli.edits) and follow the status (controller.cli.follow) through controller.cli.releaseops.
The controller acts on releases; the CLI only edits and shows them."""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from controller.cli import edits, releaseops
from controller.cli.display import View
from controller.cli.edits import RolloutRequest
from controller.cli.exitcodes import ExitCode
from controller.cli.follow import Goal
from controller.cli.releaseops import FollowOptions
from controller.cli.releaseview import (
    POD_HEADERS,
    RELEASE_HEADERS,
    detail_lines,
    pod_rows,
    release_table,
)
from controller.cli.table import render_table
from controller.errors import NotFoundError
from controller.fleetcache import cached_release, namespace_labels
from controller.kube import Kube
from controller.release import InvalidReleaseError, parse_release
from controller.rollout import PodFacts, plan_fleet, pod_facts


def releases(kube: Kube, names: Sequence[str], *, out: TextIO) -> ExitCode:
    """`hotupgrade status [NAME...]`: the release table; for each release named, its conditions and the
    pods it governs."""
    try:
        raws, _ = kube.list_releases()
    except NotFoundError as exc:
        raise releaseops.missing(kube, "") from exc
    by_name = {str(r["metadata"]["name"]): r for r in raws}
    missing = [n for n in names if n not in by_name]
    shown = [by_name[n] for n in names if n in by_name] if names else raws
    out.write(render_table(RELEASE_HEADERS, release_table(shown)) + "\n")
    for name in missing:
        out.write(f"hotupgrade: no SidecarRelease {name}\n")
    if not names:
        return ExitCode.OK
    namespaces = {str(n["metadata"]["name"]): namespace_labels(n) for n in kube.list_namespaces()[0]}
    parsed = [r for r in (cached_release(raw).parsed for raw in raws) if r is not None]
    for name in names:
        if name not in by_name:
            continue
        raw = by_name[name]
        out.write(f"\n{name}\n")
        out.write("".join(f"  {line}\n" for line in detail_lines(raw)))
        try:
            release = parse_release(raw)
        except InvalidReleaseError as exc:
            out.write(f"  invalid spec: {exc}\n")
            continue
        pods: dict[str, PodFacts] = {}
        for namespace, labels in sorted(namespaces.items()):
            if release.spec.namespace_selector.matches(labels):
                for pod in kube.list_pods(namespace)[0]:
                    facts = pod_facts(pod)
                    pods[facts.key] = facts
        plan = plan_fleet(parsed, pods.values(), namespaces, now=datetime.now(UTC)).releases[name]
        rows = pod_rows(plan, pods)
        out.write(render_table(POD_HEADERS, rows) + "\n" if rows else "  no pods governed\n")
    return ExitCode.FAILED if missing else ExitCode.OK


# Built only when the command follows: a live view takes over the terminal.
ViewFactory = Callable[[], View]


@dataclass(frozen=True)
class Command:
    """One release command: the spec edit, what to wait for, and the release to create if there is none."""

    name: str
    edit: releaseops.Edit
    goal: Goal
    create: releaseops.Create | None = None


def rollout_command(request: RolloutRequest) -> Command:
    """Create the release or set its image (and the flags given); wait for Complete."""
    return Command(
        request.name,
        lambda current: edits.rollout_edit(current, request),
        Goal.CONVERGED,
        create=lambda: edits.new_release(request),
    )


def paused_command(name: str, *, paused: bool) -> Command:
    """pause: no new pods start, wait for those in flight; resume: go on, wait for Complete."""
    goal = Goal.PAUSED if paused else Goal.CONVERGED
    return Command(name, lambda current: edits.paused_edit(current, paused=paused), goal)


def rollback_command(name: str, *, to: str | None) -> Command:
    """Set spec.image back to the previous image in status (or `to`); wait for Complete."""
    return Command(name, lambda current: edits.rollback_edit(current, to=to), Goal.CONVERGED)


def edit_and_follow(
    kube: Kube,
    command: Command,
    options: FollowOptions,
    *,
    view: ViewFactory,
    out: TextIO,
    stop: threading.Event,
) -> ExitCode:
    """Send the command's edit, say what changed, then (unless --no-wait) follow the release."""
    applied = releaseops.apply(kube, command.name, command.edit, create=command.create)
    releaseops.report_edit(applied, command.name, out)
    if not options.wait:
        return ExitCode.OK
    return releaseops.follow(kube, command.name, command.goal, options, view=view(), out=out, stop=stop)
