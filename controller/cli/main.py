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
    roll.add_argument("--max-unavailable", type=int, default=1, help="pods upgraded at once (default 1)")
    roll.add_argument("--pause-on-failure", action="store_true", help="start no new batch after a failure")
    roll.add_argument("--batch-timeout", type=float, default=1200.0, help="seconds per batch")
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


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    kube = _kube(args)
    if args.command == "releases":
        return releasecmd.releases(kube, args.names, out=sys.stdout)
    names = tuple(getattr(args, "pods", ()) or ())
    selection = Selection(namespace=args.namespace, names=names, selector=args.selector)
    out = sys.stdout
    if args.command == "rollout":
        if args.max_unavailable < 1:
            raise SystemExit("hotupgrade: --max-unavailable must be at least 1")
        options = RolloutOptions(
            image=args.image,
            max_unavailable=args.max_unavailable,
            pause_on_failure=args.pause_on_failure,
            poll_interval=args.poll_interval,
            batch_timeout=args.batch_timeout,
        )
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
