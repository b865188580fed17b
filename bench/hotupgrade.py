"""N hot upgrades of a real Envoy under load in a real pod harness; prints ONE JSON object.

    sudo .venv/bin/python -m bench.hotupgrade --upgrades 10
    sudo .venv/bin/python -m bench.hotupgrade --upgrades 10 --independent-clients \
        --h2load-clients 4 --h2load-streams 64 --wrk-connections 0   # one client kind per run
    sudo .venv/bin/python -m bench.hotupgrade --bootstrap xds --upgrades 10
    sudo .venv/bin/python -m bench.hotupgrade --upgrades 10 --user-clients \
        --grpc-streams 8 --websocket-connections 0          # gRPC unary + streams, HTTP/1.1 close

With `--bootstrap xds` the pair runs the built-in xds bootstrap (docs/bootstrap-modes.md) against the
go-control-plane test server (podharness/xds.py, built on first use), which serves the same listeners and
pushes a new route or endpoint version every `--push-interval` seconds; the JSON adds `xds` (pushes sent and
ACKed, take-overs whose listener set matched the old Envoy's).

With `--user-clients` the clients users have run beside them (podharness/clients.py): gRPC unary calls
and server streams, WebSocket connections, HTTP/1.1 with a new connection per request; the JSON adds
`clients`, per kind: requests or messages completed, failed, and streams or WebSockets
`cut_at_parent_exit` (the old Envoy's exit ends them; only an end before that is a failure).

Runs as root (network and mount namespaces). Load is HTTP/1.1 keep-alive + HTTP/2 + long-lived TCP
from the host to the pod IP, counted without retries (podharness/load.py); the flags set its shape, and
0 connections turns a kind (or an independent client) off. Takeover is measured
from the new agent's container start to its Envoy LIVE and serving (the agent's own timestamp in the
state file); the drain overhead is how long the old Envoy outlived --parent-shutdown-time-s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent import contract
from podharness.clients import ClientsConfig, UserClients
from podharness.clientstats import ClientKind, summarize_clients
from podharness.figures import UpgradeObservation, bench_figures
from podharness.independent import IndependentClients
from podharness.independent import available as independent_available
from podharness.load import LoadConfig, LoadGenerator
from podharness.metrics import sample
from podharness.pod import Pod
from podharness.sidecar import SidecarPod, Timings
from podharness.xds import ControlPlane
from podharness.xdspod import Pusher, node_id, sidecar_snapshot, xds_env


@dataclass(frozen=True)
class BenchConfig:
    upgrades: int = 10
    drain_seconds: int = 2
    parent_shutdown_seconds: int = 3
    settle_seconds: float = 1.0
    http1_connections: int = 8
    http2_connections: int = 2
    http2_streams: int = 4
    tcp_connections: int = 4
    independent_clients: bool = False
    wrk_connections: int = 4
    h2load_clients: int = 4
    h2load_streams: int = 4
    h2load_round_seconds: int = 3
    user_clients: bool = False
    grpc_unary_channels: int = 2
    grpc_unary_concurrency: int = 4
    grpc_streams: int = 4
    websocket_connections: int = 4
    http1_close_connections: int = 4
    bootstrap: str = "static"
    push_interval_seconds: float = 1.0
    takeover_deadline_seconds: int = 30


# The load shape of --user-clients: BenchConfig field (and flag) -> what it counts.
USER_CLIENT_FLAGS = {
    "grpc_unary_channels": "gRPC channels making unary calls",
    "grpc_unary_concurrency": "unary calls in flight per channel",
    "grpc_streams": "gRPC server streams, on one channel",
    "websocket_connections": "WebSocket connections, each echoing a message every 50 ms",
    "http1_close_connections": "HTTP/1.1 clients, each with a new connection per request",
}

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def observe(timings: Timings, epoch: int, agent_metrics: str) -> UpgradeObservation:
    """Takeover from the container start (so it includes the agent's own start-up) to serving."""
    serving = timings.state_serving_since if timings.state_serving_since is not None else timings.live
    return UpgradeObservation(
        epoch=epoch,
        takeover_s=serving - timings.started,
        post_start_s=timings.takeover_s,
        drain_s=timings.drain_s(),
        agent_takeover_s=sample(agent_metrics, "hotupgrade_agent_takeover_seconds"),
    )


def _control_plane(
    config: BenchConfig, pod: Pod, workdir: Path, stack: contextlib.ExitStack
) -> ControlPlane | None:
    """In xds mode: the test server on the pod's veth, serving the pod's node its first snapshot."""
    if config.bootstrap != "xds":
        return None
    server = stack.enter_context(ControlPlane(workdir / "xds", ads_host=pod.addresses.host_ip))
    server.push(node_id(pod), sidecar_snapshot("1"))
    return server


def run(config: BenchConfig, workdir: Path, progress: Progress = _quiet) -> dict[str, Any]:
    """Set up a pod, start load, upgrade config.upgrades times alternating slots, return the figures."""
    with contextlib.ExitStack() as stack:
        pod = stack.enter_context(Pod(workdir, run_dir_mount=contract.RUN_DIR, label="bench"))
        server = _control_plane(config, pod, workdir, stack)
        extra_env = (
            None
            if server is None
            else xds_env(server, takeover_deadline_seconds=config.takeover_deadline_seconds)
        )
        sidecars = SidecarPod(
            pod,
            drain_seconds=config.drain_seconds,
            parent_shutdown_seconds=config.parent_shutdown_seconds,
            extra_env=extra_env,
        )
        sidecars.start_pod()
        progress(f"pod {pod.netns} at {pod.ip}: slot a serving at epoch 0 ({config.bootstrap} bootstrap)")
        pusher = (
            None if server is None else Pusher(server, node_id(pod), config.push_interval_seconds).start()
        )
        parities: list[bool] = []
        load = LoadGenerator(
            LoadConfig(
                host=pod.ip,
                http_port=contract.LISTEN_PORT,
                tcp_port=contract.TCP_LISTEN_PORT,
                http1_connections=config.http1_connections,
                http2_connections=config.http2_connections,
                http2_streams=config.http2_streams,
                tcp_connections=config.tcp_connections,
                # Bounded, but never before the upgrades are done: the run stops the load itself.
                max_requests=10**9,
                max_seconds=120.0 * (config.upgrades + 1),
            )
        ).start()
        clients = None
        if config.user_clients:
            shape = {field: getattr(config, field) for field in USER_CLIENT_FLAGS}
            bound = 120.0 * (config.upgrades + 1)  # like the load: the run stops the clients itself
            clients = UserClients(
                ClientsConfig(host=pod.ip, port=contract.LISTEN_PORT, max_seconds=bound, **shape)
            ).start()
        independent = None
        if config.independent_clients:
            independent = IndependentClients(
                f"http://{pod.ip}:{contract.LISTEN_PORT}/",
                wrk_connections=config.wrk_connections,
                h2load_clients=config.h2load_clients,
                h2load_streams=config.h2load_streams,
                h2load_round_s=config.h2load_round_seconds,
            ).start()
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=_sample_rss, args=(sidecars, stop_sampling), daemon=True)
        sampler.start()
        observations: list[UpgradeObservation] = []
        try:
            time.sleep(config.settle_seconds)
            for epoch in range(1, config.upgrades + 1):
                slot = "b" if epoch % 2 else "a"
                timings = sidecars.upgrade(slot)
                observation = observe(timings, epoch, sidecars.metrics(slot))
                observations.append(observation)
                parity = sidecars.status(slot).get("listeners")
                parities.append(bool(parity and parity["same"]))
                running = load.summary()
                progress(
                    f"upgrade {epoch}: slot {slot} took over at epoch {epoch} "
                    f"in {observation.takeover_s:.2f}s (postStart {observation.post_start_s:.2f}s), "
                    f"old Envoy gone {observation.drain_s:.2f}s later; "
                    f"{running['requests']} requests so far, {running['failed']} failed"
                )
                time.sleep(config.settle_seconds)
        except BaseException:
            print(sidecars.logs()[-30000:], file=sys.stderr)
            raise
        finally:
            pushes = pusher.stop() if pusher is not None else 0
            summary = load.stop()
            client_record = clients.stop() if clients is not None else None
            independent_results = independent.stop() if independent is not None else None
            stop_sampling.set()
            sampler.join(5)
        figures = bench_figures(
            load=summary,
            upgrades=observations,
            agent_rss_bytes=sidecars.rss_peak,
            drain_seconds=config.drain_seconds,
            parent_shutdown_seconds=config.parent_shutdown_seconds,
        )
        if independent_results is not None:
            figures["independent_clients"] = independent_results
        if client_record is not None:
            takeovers = [timings.takeover() for timings in sidecars.timings]
            figures["clients"] = summarize_clients(
                client_record,
                takeovers,
                parent_shutdown_s=config.parent_shutdown_seconds,
                kinds=user_client_kinds(config),
            )
            figures["met"]["clients"] = all(kind["failed"] == 0 for kind in figures["clients"].values())
            figures["all_met"] = all(figures["met"].values())
        figures["load_shape"] = load_shape(config)
        figures["bootstrap"] = config.bootstrap
        figures["listener_parity_same"] = sum(parities)
        if server is not None and pusher is not None:
            node = node_id(pod)
            server.wait_acked(node, str(pusher.version))
            figures["xds"] = {
                "pushes": pushes,
                "push_errors": len(pusher.failed),
                "acks": server.status()["nodes"][node]["acks"],
                "push_interval_seconds": config.push_interval_seconds,
            }
        return figures


def user_client_kinds(config: BenchConfig) -> list[ClientKind]:
    """The client kinds a run drives (a kind with 0 connections, streams or channels does not run)."""
    sizes: dict[ClientKind, int] = {
        "grpc_unary": config.grpc_unary_channels * config.grpc_unary_concurrency,
        "grpc_stream": config.grpc_streams,
        "websocket": config.websocket_connections,
        "http1_close": config.http1_close_connections,
    }
    return [kind for kind, size in sizes.items() if size > 0] if config.user_clients else []


def load_shape(config: BenchConfig) -> dict[str, Any]:
    """The clients of a run and their connections (and streams per connection), for the JSON."""
    shape: dict[str, Any] = {
        "ours": {
            "http1_connections": config.http1_connections,
            "http2_connections": config.http2_connections,
            "http2_streams": config.http2_streams,
            "tcp_connections": config.tcp_connections,
        }
    }
    if config.independent_clients:
        shape["wrk"] = {"connections": config.wrk_connections}
        shape["h2load"] = {
            "clients": config.h2load_clients,
            "streams": config.h2load_streams,
            "round_seconds": config.h2load_round_seconds,
        }
    if config.user_clients:
        shape["clients"] = {field: getattr(config, field) for field in USER_CLIENT_FLAGS}
    return shape


def _sample_rss(sidecars: SidecarPod, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        sidecars.sample_agent_rss()


# The load shape, ours and the independent clients': BenchConfig field (and flag) -> what it counts.
LOAD_SHAPE_FLAGS = {
    "http1_connections": "HTTP/1.1 keep-alive connections",
    "http2_connections": "HTTP/2 connections",
    "http2_streams": "concurrent streams per HTTP/2 connection",
    "tcp_connections": f"long-lived TCP connections, one echo each every {LoadConfig.tcp_interval_s:g} s",
    "wrk_connections": "--independent-clients: wrk's connections (-c)",
    "h2load_clients": "--independent-clients: h2load's clients (-c)",
    "h2load_streams": "--independent-clients: streams per h2load client (-m)",
    "h2load_round_seconds": "--independent-clients: h2load stops a client at its first GOAWAY, so it runs "
    "in rounds this long",
}


def _valued(group: argparse._ActionsContainer, flag: str, field: str, text: str) -> None:
    """An option whose type and default are BenchConfig's `field`; its help ends in the default, so
    `--help` shows the run it describes."""
    default = getattr(BenchConfig, field)
    group.add_argument(flag, type=type(default), default=default, help=text + " (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.hotupgrade", description=__doc__.splitlines()[0])
    _valued(parser, "--upgrades", "upgrades", "hot upgrades to run, alternating slots b and a")
    _valued(
        parser,
        "--drain-seconds",
        "drain_seconds",
        "the sidecars' HOTUPGRADE_DRAIN_SECONDS (Envoy's --drain-time-s)",
    )
    _valued(
        parser,
        "--parent-shutdown-seconds",
        "parent_shutdown_seconds",
        "the sidecars' HOTUPGRADE_PARENT_SHUTDOWN_SECONDS (Envoy's --parent-shutdown-time-s): how long an "
        "old Envoy outlives its drain's start",
    )
    _valued(
        parser,
        "--settle-seconds",
        "settle_seconds",
        "seconds under load before the first upgrade and after each",
    )
    parser.add_argument(
        "--independent-clients",
        action="store_true",
        help="also drive wrk (HTTP/1.1) and h2load (HTTP/2) at the pod (`make load-tools` installs them)",
    )
    parser.add_argument(
        "--user-clients",
        action="store_true",
        help="also drive gRPC unary and streaming, WebSocket and HTTP/1.1 Connection: close clients",
    )
    shape = parser.add_argument_group("load shape (0 turns a client off)")
    user_clients = {field: f"--user-clients: {text}" for field, text in USER_CLIENT_FLAGS.items()}
    for field, text in {**LOAD_SHAPE_FLAGS, **user_clients}.items():
        _valued(shape, "--" + field.replace("_", "-"), field, text)
    parser.add_argument(
        "--bootstrap",
        choices=("static", "xds"),
        default=BenchConfig.bootstrap,
        help="xds: listeners from the go-control-plane test server, which pushes while upgrades run"
        " (default: %(default)s)",
    )
    _valued(
        parser,
        "--push-interval",
        "push_interval_seconds",
        "--bootstrap xds: seconds between the control plane's pushes of a new route or endpoint version",
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and run dir here (default: a temp dir)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def config_from(args: argparse.Namespace) -> BenchConfig:
    return BenchConfig(
        upgrades=args.upgrades,
        drain_seconds=args.drain_seconds,
        parent_shutdown_seconds=args.parent_shutdown_seconds,
        settle_seconds=args.settle_seconds,
        independent_clients=args.independent_clients,
        http1_connections=args.http1_connections,
        http2_connections=args.http2_connections,
        http2_streams=args.http2_streams,
        tcp_connections=args.tcp_connections,
        wrk_connections=args.wrk_connections,
        h2load_clients=args.h2load_clients,
        h2load_streams=args.h2load_streams,
        h2load_round_seconds=args.h2load_round_seconds,
        user_clients=args.user_clients,
        **{field: getattr(args, field) for field in USER_CLIENT_FLAGS},
        bootstrap=args.bootstrap,
        push_interval_seconds=args.push_interval,
    )


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("bench.hotupgrade needs root: it creates a network namespace and mount namespaces")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    require_root()
    if args.independent_clients and not independent_available():
        sys.exit("--independent-clients needs wrk and h2load: run `make load-tools`")
    if args.user_clients and args.bootstrap != "static":
        # The test control plane's listeners (podharness/xdsconfig.py) route neither gRPC nor WebSocket.
        sys.exit("--user-clients needs --bootstrap static: the xds test listeners carry no gRPC or WebSocket")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        figures = run(config_from(args), args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="hotupgrade-bench-") as tmp:
            figures = run(config_from(args), Path(tmp))
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
