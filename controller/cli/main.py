"""Argument parsing for `hotupgrade`; each subcommand maps onto one function in commands."""

import argparse
import signal
import sys
import threading
from types import FrameType

from controller.agents import AgentClient
from controller.cli import commands, releasecmd
from controller.cli.commands import RolloutOptions, Selection
from controller.errors import KubeError
from controller.kube import Kube
from webhook.kubeclient import KUBECONFIG, load_api_client


def _selection_args(parser: argparse.ArgumentParser, *, names: bool) -> None:
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("-l", "--selector", help="label selector, as kubectl -l")
    if names:
        parser.add_argument("pods", nargs="*", help="pod names (instead of, or within, the selector)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotupgrade", description="Hitless sidecar upgrades, by annotation."
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    sub = parser.add_subparsers(dest="command", required=True)

    roll = sub.add_parser("rollout", help="upgrade the selected pods' sidecar, batch by batch")
    _selection_args(roll, names=False)
    roll.add_argument("--image", required=True, help="the sidecar image to roll out")
    roll.add_argument(
        "--max-unavailable",
        type=int,
        default=1,
        help="selected pods that may be unavailable at once, NotReady ones included (default 1)",
    )
    roll.add_argument(
        "--max-failures",
        type=int,
        default=commands.DEFAULT_MAX_FAILURES,
        help="start no new pod once this many upgrades of this run failed; 0 never stops (default 1)",
    )
    # Before issue 12 the rollout went on after failures unless this flag was given; stopping is now
    # the default, so the flag only spells out `--max-failures 1`.
    roll.add_argument("--pause-on-failure", action="store_true", help="deprecated: the default now")
    roll.add_argument(
        "--progress-deadline",
        type=float,
        default=1200.0,
        help="stop if no pod finishes for this many seconds (default 1200)",
    )
    roll.add_argument("--batch-timeout", type=float, dest="progress_deadline", help=argparse.SUPPRESS)
    roll.add_argument("--poll-interval", type=float, default=2.0, help="seconds between progress checks")

    show = sub.add_parser("status", help="table of pods: active slot, images, epoch, phase")
    _selection_args(show, names=True)
    show.add_argument("--no-epoch", action="store_true", help="do not ask the agents for the epoch")

    rel = sub.add_parser("releases", help="SidecarReleases: table; with names, conditions and pods")
    rel.add_argument("names", nargs="*", help="release names (default: all, table only)")

    for name, text in (
        ("rollback", "abort an upgrade in flight, or upgrade back to the previous image"),
        ("abort", "abort upgrades in flight (the standby goes back to the empty image)"),
        ("retry", "retry failed upgrades"),
    ):
        _selection_args(sub.add_parser(name, help=text), names=True)
    return parser


def _kube(args: argparse.Namespace) -> Kube:
    client = load_api_client(args.kubeconfig, fallbacks=KUBECONFIG)  # like kubectl: $KUBECONFIG, ~/.kube
    return Kube(client, component="hotupgrade-cli")


def rollout_options(args: argparse.Namespace) -> RolloutOptions:
    """The rollout's options, checked before any API call. Raises SystemExit with the reason."""
    if args.max_unavailable < 1:
        raise SystemExit("hotupgrade: --max-unavailable must be at least 1")
    if args.max_failures < 0:
        raise SystemExit("hotupgrade: --max-failures must be 0 (never stop) or more")
    if args.pause_on_failure:
        sys.stderr.write(
            "hotupgrade: --pause-on-failure is deprecated: a rollout stops after --max-failures "
            "failed upgrades (default 1)\n"
        )
        if args.max_failures != 1:
            raise SystemExit("hotupgrade: --pause-on-failure means --max-failures 1; give only one")
    names = ("image", "max_unavailable", "max_failures", "poll_interval", "progress_deadline")
    return RolloutOptions(**{name: getattr(args, name) for name in names})


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    options = rollout_options(args) if args.command == "rollout" else None
    kube = _kube(args)
    if args.command == "releases":
        return releasecmd.releases(kube, args.names, out=sys.stdout)
    names = tuple(getattr(args, "pods", ()) or ())
    selection = Selection(namespace=args.namespace, names=names, selector=args.selector)
    out = sys.stdout
    if options is not None:
        return commands.rollout(kube, selection, options, out=out, tty=out.isatty(), stop=stop)
    if args.command == "status":
        agents = None if args.no_epoch else AgentClient(timeout=1.0)
        return commands.status(kube, selection, out=out, agents=agents)
    action = {"rollback": commands.rollback, "abort": commands.abort, "retry": commands.retry}[args.command]
    return action(kube, selection, out=out)


def main(argv: list[str] | None = None) -> int:
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
    except KubeError as exc:
        sys.stderr.write(f"hotupgrade: API error {exc.status}: {exc.message[:500]}\n")
        return commands.EXIT_FAILED
