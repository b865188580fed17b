"""The I/O half of `hotupgrade rollout|pause|resume|rollback NAME`: read the release, send the edit that
controller.cli.edits decides, then follow its status with controller.cli.follow until done.

The CLI edits spec and reads status, nothing else: the controller acts, so `kubectl apply -f` of the same
release does the same job, and a CLI that dies or is stopped leaves a rollout that goes on. A write that
loses a race (409) is decided again on a fresh read; a blip of the API server is retried (one tenacity
policy, below). The API server's refusals are printed in its own words: its CEL messages name the field.
"""

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import tenacity

from controller.cli.display import View
from controller.cli.edits import EditRefusedError, spec_patch
from controller.cli.exitcodes import ExitCode
from controller.cli.follow import (
    Goal,
    Watchdog,
    describe_patch,
    summarize,
    verdict,
)
from controller.errors import ConflictError, KubeError, NotFoundError, TransientError
from controller.kube import Kube
from controller.release import GROUP, PLURAL

CRD = f"{PLURAL}.{GROUP}"


class ReleaseCommandError(Exception):
    """The command cannot go on; the message is for the user, as is."""


def _crd_missing() -> ReleaseCommandError:
    return ReleaseCommandError(
        f"the SidecarRelease CRD ({CRD}) is not installed in this cluster: install the chart "
        "(helm install ... charts/sidecar-hotupgrade), or `kubectl apply --server-side -f "
        "charts/sidecar-hotupgrade/crds/`"
    )


def refusal(exc: KubeError) -> str:
    """The API server's message from a refused write, verbatim (its Status `message`)."""
    try:
        status = json.loads(exc.message)
    except ValueError:
        return exc.message[:2000]
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return exc.message[:2000]


# Conflicts are decided again on a fresh read; transient errors (429, 5xx, connection) asked again.
_retried = tenacity.retry(
    retry=tenacity.retry_if_exception_type((ConflictError, TransientError)),
    stop=tenacity.stop_after_attempt(10) | tenacity.stop_after_delay(60),
    wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.1),
    reraise=True,
)


@_retried
def get_release(kube: Kube, name: str) -> dict[str, Any] | None:
    return kube.get_release(name)


def missing(kube: Kube, name: str) -> ReleaseCommandError:
    """Why `name` is not there: no such release, or no CRD at all (the same 404 on a get)."""
    try:
        kube.list_releases()
    except NotFoundError:
        return _crd_missing()
    return ReleaseCommandError(f"no SidecarRelease {name} (`hotupgrade status` lists them)")


@dataclass(frozen=True)
class Applied:
    """The release after the edit, and what changed (empty: nothing to write)."""

    release: dict[str, Any]
    created: bool
    ops: tuple[dict[str, Any], ...]


Edit = Callable[[Mapping[str, Any]], dict[str, Any]]
Create = Callable[[], dict[str, Any]]


@_retried
def _apply_once(kube: Kube, name: str, edit: Edit, create: Create | None) -> Applied:
    current = kube.get_release(name)
    if current is None:
        if create is None:
            raise missing(kube, name)
        try:
            # A create racing another is ConflictError (AlreadyExists): the retry reads it and edits.
            return Applied(kube.create_release(create()), created=True, ops=())
        except NotFoundError as exc:
            raise _crd_missing() from exc
    ops = spec_patch(current, edit(current))
    if not ops:
        return Applied(current, created=False, ops=())
    return Applied(kube.patch_release(name, ops), created=False, ops=tuple(ops))


def apply(kube: Kube, name: str, edit: Edit, *, create: Create | None = None) -> Applied:
    """Create the release (with `create`, when there is none) or send `edit(current)`'s diff; a lost
    race is decided again. EditRefusedError and the API server's refusals become ReleaseCommandError."""
    try:
        return _apply_once(kube, name, edit, create)
    except EditRefusedError as exc:
        raise ReleaseCommandError(str(exc)) from exc
    except (ConflictError, TransientError):
        raise
    except NotFoundError as exc:  # deleted between the read and the write
        raise missing(kube, name) from exc
    except KubeError as exc:
        raise ReleaseCommandError(f"the API server refused the edit of {name}: {refusal(exc)}") from exc


def report_edit(applied: Applied, name: str, out: TextIO) -> None:
    generation = (applied.release.get("metadata") or {}).get("generation")
    if applied.created:
        image = (applied.release.get("spec") or {}).get("image")
        out.write(f"SidecarRelease {name} created: image {image} (generation {generation})\n")
    elif applied.ops:
        out.write(f"SidecarRelease {describe_patch(name, list(applied.ops))} (generation {generation})\n")
    else:
        out.write(f"SidecarRelease {name} unchanged (generation {generation})\n")
    out.flush()


@dataclass(frozen=True)
class FollowOptions:
    """`timeout` and `progress_deadline` in seconds, 0 for none; `wait` False: return after the edit."""

    wait: bool = True
    poll_interval: float = 1.0
    timeout: float = 0.0
    progress_deadline: float = 1200.0


def follow(
    kube: Kube,
    name: str,
    goal: Goal,
    options: FollowOptions,
    *,
    view: View,
    out: TextIO,
    stop: threading.Event,
) -> ExitCode:
    """Read the release every poll interval and show it until the verdict, a deadline or Ctrl-C."""
    watchdog = Watchdog(
        started=time.monotonic(), timeout=options.timeout, progress_deadline=options.progress_deadline
    )
    ending = None
    code = ExitCode.INTERRUPTED
    try:
        while not stop.is_set():
            raw = get_release(kube, name)
            if raw is None:
                code, ending = ExitCode.FAILED, f"{name}: the SidecarRelease was deleted"
                break
            summary = summarize(raw)
            view.show(summary)
            end = verdict(summary, goal)
            if end is not None:
                code, ending = end.code, end.text
                break
            why = watchdog.check(summary, time.monotonic())
            if why is not None:
                code = ExitCode.TIMEOUT
                ending = (
                    f"{name}: stopped following: {why}; the controller goes on (`hotupgrade status {name}`)"
                )
                break
            stop.wait(options.poll_interval)
    finally:
        view.close()
    if ending is None:
        ending = f"{name}: interrupted; the controller goes on with the release (`hotupgrade status {name}`)"
    out.write(ending + "\n")
    out.flush()
    return code
