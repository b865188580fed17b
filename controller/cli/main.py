"""Argument parsing for `hotupgrade`; each subcommand maps onto one function of releasecmd (SidecarReleases:
the default) or commands (pods, by annotation: `rollout --direct` and the per-pod commands)."""

import argparse
import os
import signal
import sys
import threading
from types import FrameType
from typing import TypeAlias

from kubernetes.config import ConfigException

from controller.agents import AgentClient
from controller.cli import commands, releasecmd
from controller.cli.commands import RolloutOptions, Selection
from controller.cli.display import View, view_for
from controller.cli.edits import RolloutRequest, int_or_percent
from controller.cli.exitcodes import ExitCode, epilog
from controller.cli.releaseops import FollowOptions, ReleaseCommandError
from controller.cli.selectors import SelectorSyntaxError, namespaces_selector, parse_label_selector
from controller.errors import KubeError
from controller.kube import Kube
from webhook.kubeclient import KUBECONFIG, load_api_client

DIRECT_POLL_INTERVAL = 2.0
RELEASE_POLL_INTERVAL = 1.0


def _wait_args(group: argparse._ActionsContainer, *, mode: str = "") -> None:
    """--no-wait and --timeout: following a release; `mode` starts each help (rollout has two modes)."""
    group.add_argument("--no-wait", action="store_true", help=f"{mode}return after the edit, do not follow")
    group.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help=f"{mode}stop following after this many seconds (default: none)",
    )


def _pace_args(group: argparse._ActionsContainer, *, mode: str = "") -> None:
    """--progress-deadline and --poll-interval: how long to wait for progress, how often to look."""
    group.add_argument(
        "--progress-deadline",
        type=float,
        default=1200.0,
        help=f"{mode}seconds without progress after which to stop following (default: 1200); following "
        "a release: exit 3, the rollout goes on (no change in the status); --direct: the rollout stops, "
        "upgrades in flight finish, exit 1 (no pod finished)"
        if mode
        else "stop following if the status does not change for this many seconds; the release goes on, "
        "exit 3 (default: 1200)",
    )
    group.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help=f"{mode}seconds between reads (default: {RELEASE_POLL_INTERVAL:g} following a release, "
        f"{DIRECT_POLL_INTERVAL:g} with --direct)"
        if mode
        else f"seconds between status reads (default: {RELEASE_POLL_INTERVAL:g})",
    )


def _follow_args(parser: argparse.ArgumentParser) -> None:
    _wait_args(parser)
    _pace_args(parser)


def _pods_args(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("-n", "--namespace", required=required, help="the pods' namespace")
    parser.add_argument("-l", "--selector", help="label selector, as kubectl -l")


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _global_args(parser: argparse.ArgumentParser, *, default: object) -> None:
    """The options of every command, accepted before or after the subcommand's name."""
    parser.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )


def _global_parent() -> argparse.ArgumentParser:
    """The global options again, for each subcommand. Their default is SUPPRESS: a subcommand that was
    not given one leaves the value parsed before its name alone (argparse copies every attribute the
    subparser sets over the main parser's), and one given after the name wins over one before it."""
    parent = argparse.ArgumentParser(add_help=False)
    _global_args(parent, default=argparse.SUPPRESS)
    return parent


# `rollout --help` shows each mode's options under its own title; each help starts with its mode too.
RELEASE_MODE = ("release mode (rollout NAME)", "release mode: ")
DIRECT_MODE = ("direct mode (rollout --direct -n NAMESPACE)", "direct mode: ")
BOTH_MODES = ("both modes", "both modes: ")


def _rollout_parser(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    roll = sub.add_parser(
        "rollout",
        parents=[parent],
        help="create or edit a SidecarRelease and follow it (--direct: annotate pods from here)",
        description="Without --direct: set the image of SidecarRelease NAME (created if missing) and follow "
        "its status until Complete; the controller does the rollout. With --direct: annotate the pods of "
        "one namespace batch by batch from this process (docs/rollout.md).",
    )
    title, mode = RELEASE_MODE
    release = roll.add_argument_group(
        title,
        "the controller moves the pods of SidecarRelease NAME; fields not given stay as they are "
        "(on create: the CRD's defaults)",
    )
    release.add_argument("name", nargs="?", help=f"{mode}the SidecarRelease to create or edit")
    release.add_argument("--namespace-selector", help=f"{mode}namespace label selector (instead of -n)")
    release.add_argument(
        "-A", "--all-namespaces", action="store_true", help=f"{mode}select pods of every namespace"
    )
    release.add_argument(
        "--partition", help=f"{mode}matched pods kept on their image: a count or a percentage"
    )
    release.add_argument("--priority", type=int, help=f"{mode}settles pods that several releases select")
    release.add_argument(
        "--empty-image",
        help=f"{mode}the release's spec.emptyImage (see `kubectl explain sidecarrelease.spec`)",
    )
    _wait_args(release, mode=mode)

    title, mode = DIRECT_MODE
    direct = roll.add_argument_group(
        title, "no release: this process annotates the pods of one namespace, batch by batch"
    )
    direct.add_argument(
        "--direct",
        action="store_true",
        help=f"{mode}annotate the pods of -n NAMESPACE from this process, within --max-unavailable "
        "and PodDisruptionBudgets",
    )
    # Before issue 12 the rollout went on after failures unless this flag was given; stopping is now
    # the default, so the flag only spells out `--max-failures 1`.
    direct.add_argument("--pause-on-failure", action="store_true", help=f"{mode}deprecated: the default now")

    title, mode = BOTH_MODES
    both = roll.add_argument_group(title, "where the two modes read an option differently, its help says how")
    both.add_argument("--image", required=True, help=f"{mode}the sidecar image to roll out")
    both.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help=f"{mode}a namespace whose pods the release selects (repeatable); --direct: the pods' namespace "
        "(exactly one)",
    )
    both.add_argument(
        "-l", "--selector", help=f"{mode}pod label selector, as kubectl -l ('' selects all pods)"
    )
    both.add_argument(
        "--max-unavailable",
        help=f"{mode}pods unavailable at once: a count or a percentage (--direct: a count, default 1)",
    )
    both.add_argument(
        "--max-failures",
        type=int,
        help=f"{mode}failed upgrades that pause the release (>= 1; default: 1 on create, an edit "
        "without it keeps the release's value), or stop a --direct rollout (0 = never; default: 1)",
    )
    _pace_args(both, mode=mode)
    # After --progress-deadline, whose default (1200) it must not replace.
    direct.add_argument("--batch-timeout", type=float, dest="progress_deadline", help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotupgrade",
        # Raw: the epilog is a table. So the description is wrapped here.
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hitless sidecar upgrades: SidecarReleases (the controller converges the pods they\n"
        "select), or pods by annotation.",
        epilog=epilog(),
    )
    _global_args(parser, default=None)
    parent = _global_parent()
    sub = parser.add_subparsers(dest="command", required=True)
    _rollout_parser(sub, parent)

    for name, text in (
        (
            "pause",
            "pause a SidecarRelease: no new pods start, pods already held at the swap still swap; waits "
            "until nothing is in flight",
        ),
        ("resume", "resume a paused SidecarRelease (spec.strategy.paused: false) and follow it to Complete"),
    ):
        paused = sub.add_parser(
            name, parents=[parent], help=text, description=text[0].upper() + text[1:] + "."
        )
        paused.add_argument("name", help="the SidecarRelease")
        _follow_args(paused)

    back = sub.add_parser(
        "rollback",
        parents=[parent],
        help="a SidecarRelease back to its previous image; with -n, pods: abort or upgrade back",
        description="Without -n: set spec.image of SidecarRelease NAME back to an image its status records "
        "and follow it until Complete; the controller moves the pods. With -n NAMESPACE: for each pod, "
        "abort its upgrade in flight, or upgrade it back to the image its last completed upgrade replaced.",
    )
    back.add_argument("names", nargs="*", help="the SidecarRelease; with -n, pod names")
    _pods_args(back, required=False)
    # The rule is controller.cli.edits.rollback_candidates; the CLI refuses when there is none.
    back.add_argument(
        "--to",
        metavar="IMAGE",
        help="a SidecarRelease: status.image or one of status.previousImages (default: the most recent "
        "image status records that is not spec.image: status.image when spec.image has moved on from it, "
        "an edit the controller has not seen yet, else status.previousImages[0])",
    )
    _follow_args(back)

    show = sub.add_parser(
        "status",
        parents=[parent],
        help="SidecarReleases (with names: conditions and pods); with -n, a table of pods",
        description="Without -n: a table of the SidecarReleases and, for each NAME given, its conditions "
        "and the pods it governs. With -n NAMESPACE: one row per pod (POD names or -l narrow it), the "
        "epoch asked of each pod's agent unless --no-epoch. Reads only.",
    )
    show.add_argument("names", nargs="*", help="SidecarRelease names; with -n, pod names")
    _pods_args(show, required=False)
    show.add_argument("--no-epoch", action="store_true", help="-n: do not ask the agents for the epoch")

    for name, text in (
        (
            "abort",
            "abort pods' upgrades until the new Envoy has taken over (the standby goes back to the empty "
            "image); recorded Failed (Aborted), which counts against a SidecarRelease's maxFailures",
        ),
        ("retry", "retry pods' failed upgrades (hotupgrade.io/retry): the controller starts them again"),
    ):
        each = sub.add_parser(name, parents=[parent], help=text, description=text[0].upper() + text[1:] + ".")
        _pods_args(each, required=True)
        each.add_argument("pods", nargs="*", help="pod names (instead of, or within, the selector)")
    return parser


class KubeconfigError(Exception):
    """No kubeconfig loads: the message names where the CLI looked."""


def _kube(args: argparse.Namespace) -> Kube:
    try:
        client = load_api_client(args.kubeconfig, fallbacks=KUBECONFIG)  # like kubectl: $KUBECONFIG, ~/.kube
    except (ConfigException, OSError) as exc:
        looked = args.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeconfigError(f"cannot load a kubeconfig from {looked}: {exc}") from exc
    return Kube(client, component="hotupgrade-cli")


_RELEASE_ONLY = ("namespace_selector", "all_namespaces", "partition", "priority", "empty_image", "no_wait")


def rollout_options(args: argparse.Namespace) -> tuple[Selection, RolloutOptions]:
    """`rollout --direct`: the pods and options, checked before any API call. SystemExit says why not."""
    if args.name:
        raise SystemExit("hotupgrade: rollout --direct takes no release name (it annotates pods)")
    given = [f"--{n.replace('_', '-')}" for n in _RELEASE_ONLY if getattr(args, n)]
    if args.timeout:
        given.append("--timeout")
    if given:
        raise SystemExit(f"hotupgrade: {', '.join(given)}: SidecarRelease options, not for --direct")
    if len(args.namespace) != 1:
        raise SystemExit("hotupgrade: rollout --direct needs exactly one -n NAMESPACE")
    max_unavailable = int_or_percent(args.max_unavailable or "1")
    if not isinstance(max_unavailable, int) or max_unavailable < 1:
        raise SystemExit("hotupgrade: --max-unavailable must be at least 1 (--direct: a count)")
    max_failures = commands.DEFAULT_MAX_FAILURES if args.max_failures is None else args.max_failures
    if max_failures < 0:
        raise SystemExit("hotupgrade: --max-failures must be 0 (never stop) or more")
    if args.pause_on_failure:
        sys.stderr.write(
            "hotupgrade: --pause-on-failure is deprecated: a rollout stops after --max-failures "
            "failed upgrades (default 1)\n"
        )
        if max_failures != 1:
            raise SystemExit("hotupgrade: --pause-on-failure means --max-failures 1; give only one")
    options = RolloutOptions(
        image=args.image,
        max_unavailable=max_unavailable,
        max_failures=max_failures,
        poll_interval=args.poll_interval or DIRECT_POLL_INTERVAL,
        progress_deadline=args.progress_deadline,
    )
    return Selection(namespace=args.namespace[0], selector=args.selector), options


def rollout_request(args: argparse.Namespace) -> RolloutRequest:
    """`rollout NAME`: the release fields given. SystemExit says what is missing or contradictory."""
    if not args.name:
        raise SystemExit(
            "hotupgrade: rollout needs a SidecarRelease NAME (the controller rolls it out; `hotupgrade "
            "status` lists them), or --direct -n NAMESPACE to annotate the pods from this process"
        )
    if args.pause_on_failure:
        raise SystemExit("hotupgrade: --pause-on-failure is for --direct; a release uses --max-failures")
    chosen = [bool(args.namespace), bool(args.namespace_selector), args.all_namespaces]
    if sum(chosen) > 1:
        raise SystemExit("hotupgrade: give one of -n, --namespace-selector and -A")
    try:
        selector = None if args.selector is None else parse_label_selector(args.selector)
        namespaces = (
            namespaces_selector(args.namespace)
            if args.namespace
            else parse_label_selector(args.namespace_selector)
            if args.namespace_selector
            else None
        )
    except SelectorSyntaxError as exc:
        raise SystemExit(f"hotupgrade: {exc}") from exc
    strategy: dict[str, int | str] = {}
    if args.max_unavailable is not None:
        strategy["maxUnavailable"] = int_or_percent(args.max_unavailable)
    if args.partition is not None:
        strategy["partition"] = int_or_percent(args.partition)
    if args.max_failures is not None:
        strategy["maxFailures"] = args.max_failures
    return RolloutRequest(
        name=args.name,
        image=args.image,
        selector=selector,
        namespace_selector=namespaces,
        all_namespaces=args.all_namespaces,
        strategy=strategy,
        priority=args.priority,
        empty_image=args.empty_image,
    )


def follow_options(args: argparse.Namespace) -> FollowOptions:
    return FollowOptions(
        wait=not args.no_wait,
        poll_interval=args.poll_interval or RELEASE_POLL_INTERVAL,
        timeout=args.timeout,
        progress_deadline=args.progress_deadline,
    )


def _pod_selection(args: argparse.Namespace, names: list[str]) -> Selection:
    return Selection(namespace=args.namespace, names=tuple(names), selector=args.selector)


def _pods_view(args: argparse.Namespace) -> bool:
    """`status` and `rollback` act on pods when given -n (as abort and retry always do)."""
    if args.command in ("abort", "retry"):
        return True
    return args.command in ("status", "rollback") and bool(args.namespace)


def release_command(args: argparse.Namespace) -> releasecmd.Command | None:
    """The SidecarRelease edit the arguments ask for (None: a read, or a command on pods). SystemExit
    says what is wrong with them, before any API call."""
    command = args.command
    if command in ("status", "rollback") and not args.namespace and args.selector:
        raise SystemExit(f"hotupgrade: {command} -l selects pods: give -n NAMESPACE too")
    if command == "rollout":
        return None if args.direct else releasecmd.rollout_command(rollout_request(args))
    if command in ("pause", "resume"):
        return releasecmd.paused_command(args.name, paused=command == "pause")
    if command != "rollback":
        return None
    if _pods_view(args):
        if args.to:
            raise SystemExit(
                "hotupgrade: --to is for a SidecarRelease; a pod goes back to its previous image"
            )
        return None
    if len(args.names) != 1:
        raise SystemExit(
            "hotupgrade: rollback takes one SidecarRelease NAME (or -n NAMESPACE POD... for pods)"
        )
    return releasecmd.rollback_command(args.names[0], to=args.to)


def run(args: argparse.Namespace, stop: threading.Event) -> ExitCode:
    out = sys.stdout
    command = args.command
    # Options are checked before the kubeconfig is read: a usage error needs no cluster.
    direct = rollout_options(args) if command == "rollout" and args.direct else None
    edit = release_command(args)
    kube = _kube(args)
    if direct is not None:
        selection, options = direct
        return commands.rollout(kube, selection, options, out=out, tty=out.isatty(), stop=stop)
    if edit is not None:

        def view() -> View:
            return view_for(out, tty=out.isatty())

        return releasecmd.edit_and_follow(kube, edit, follow_options(args), view=view, out=out, stop=stop)
    if command == "status" and not _pods_view(args):
        return releasecmd.releases(kube, args.names, out=out)
    selection = _pod_selection(args, args.pods if command in ("abort", "retry") else args.names)
    if command == "status":
        agents = None if args.no_epoch else AgentClient(timeout=1.0)
        return commands.status(kube, selection, out=out, agents=agents)
    action = {"rollback": commands.rollback, "abort": commands.abort, "retry": commands.retry}[command]
    return action(kube, selection, out=out)


def main(argv: list[str] | None = None) -> int:
    """The `hotupgrade` console script: an ExitCode (argparse exits 2, ExitCode.USAGE, on its own)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C means now
        sys.stderr.write("\nstopping after the current API call (Ctrl-C again to quit at once)\n")
        stop.set()

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        return run(args, stop)
    except (ReleaseCommandError, KubeconfigError) as exc:
        sys.stderr.write(f"hotupgrade: {exc}\n")
        return ExitCode.FAILED
    except KubeError as exc:
        sys.stderr.write(f"hotupgrade: API error {exc.status}: {exc.message[:500]}\n")
        return ExitCode.FAILED
