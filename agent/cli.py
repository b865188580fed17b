"""`hotupgrade-agent run | wait | status | capture`: the sidecar's entrypoint, its postStart hook, a peek,
and the capture init container's command (docs/contract.md "Traffic capture").

Configuration comes only from the environment names of docs/contract.md (agent/config.py).
Exit codes: run 0 after SIGTERM, 1 on a startup error, 2 on bad configuration; wait 0 ready, standing
by (a replaced slot restarted before its reset: passing keeps the kubelet from crash-looping it) or
failed while the other slot's Envoy serves on (the controller rolls it back, agent/hook.py), 1 this slot
failed with no other Envoy serving, 2 timeout; status 0 printed, 1 no state yet; capture 0 rules in
place, 1 iptables failed, 2 bad redirect list.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from agent.config import AgentConfig, ConfigError, load_config

START = time.monotonic()
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _config() -> AgentConfig:
    try:
        return load_config(os.environ)
    except ConfigError as error:
        print(f"hotupgrade-agent: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def run() -> int:
    """`hotupgrade-agent run`: supervise this slot's Envoy until SIGTERM; the exit code."""
    from agent.envoy import EnvoyBinaryError, EnvoyValidator, probe_versions, resolve_binary
    from agent.logs import EventLog
    from agent.preflight import start_preflight
    from agent.rundir import RunDir

    config = _config()
    environ = dict(os.environ)
    log = EventLog(config.slot)
    validator = EnvoyValidator()
    rundir = RunDir(config.run_dir)
    rundir.ensure()
    try:
        binary = resolve_binary(config.envoy_binary)
    except EnvoyBinaryError as error:
        log.error("envoy-binary-unusable", error=str(error))
        return 1
    # Validating the first bootstrap overlaps the version probe, the imports below and the first observation.
    preflight = start_preflight(config, environ, binary=binary, validator=validator)
    try:
        versions = probe_versions(binary)
    except EnvoyBinaryError as error:
        preflight.cancel()
        log.error("envoy-binary-unusable", error=str(error))
        return 1

    from agent.admin import EnvoyAdmin
    from agent.envoy import ThreadSpawner
    from agent.fencing import FenceDesk
    from agent.launch import EnvoyStarter
    from agent.metrics import AgentMetrics
    from agent.records import StateRecorder
    from agent.status import StatusServer
    from agent.supervisor import Supervisor
    from agent.view import ViewKeeper

    metrics = AgentMetrics()
    admin = EnvoyAdmin(config.admin_port)
    records = StateRecorder(rundir, slot=config.slot, base_id=config.base_id, log=log)
    view = ViewKeeper(slot=config.slot, versions=versions, metrics=metrics, log=log)
    stop = threading.Event()
    starter = EnvoyStarter(
        config,
        environ=environ,
        binary=binary,
        versions=versions,
        launcher=ThreadSpawner(),
        validator=validator,
        admin=admin,
        rundir=rundir,
        records=records,
        view=view,
        metrics=metrics,
        log=log,
        stop=stop,
        started_at=START,
        preflight=preflight,
    )
    supervisor = Supervisor(
        config, starter=starter, records=records, view=view, admin=admin, metrics=metrics, log=log, stop=stop
    )

    def on_signal(signum: int) -> None:
        log.event("signal", signal=signal.Signals(signum).name)
        supervisor.request_stop()

    _handle_stop_signals(on_signal)
    try:
        status = StatusServer(
            port=config.status_port,
            view=supervisor.view,
            state=supervisor.shared_state,
            metrics=metrics.render,
            envoy_stats=supervisor.envoy_stats,
            fence=rundir.read_fence,
            fence_desk=FenceDesk(
                slot=config.slot, rundir=rundir, records=records, view=supervisor.view, log=log
            ),
        )
    except OSError as error:
        preflight.cancel()
        log.error("status-server-failed", port=config.status_port, error=str(error))
        return 1
    status.start()
    log.event("status-server", port=status.port)
    try:
        return supervisor.run()
    finally:
        status.close()


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Installed so that Python's C-level handler writes the signal to the wakeup fd."""


def _handle_stop_signals(on_signal: Callable[[int], None]) -> None:
    """Run on_signal for SIGTERM/SIGINT on a thread of its own (main thread only, before other handlers).

    A Python signal handler runs on the main thread between two bytecodes; one that logs or sets an
    Event deadlocks when the main thread holds that lock at the time (seen: SIGTERM during log.bind).
    """
    read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.set_blocking(read_fd, True)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _ignore)

    def watch() -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum in STOP_SIGNALS:
                    on_signal(signum)

    threading.Thread(target=watch, name="stop-signals", daemon=True).start()


def _get(port: int, path: str) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait(timeout: float | None) -> int:
    """Poll this slot's status server until its Envoy is LIVE and owns the listeners, it stands by, or
    it failed (agent/hook.py: passing when the other slot's Envoy serves on)."""
    from agent.hook import wait_verdict

    config = _config()
    limit = config.wait_timeout if timeout is None else timeout
    deadline = time.monotonic() + limit
    last = "the agent's status server did not answer"
    while time.monotonic() < deadline:
        ready = _get(config.status_port, "/healthz/ready")
        if ready is not None and ready[0] == 200:
            print(f"hotupgrade-agent: slot {config.slot} is ready")
            return 0
        answer = _get(config.status_port, "/status")
        if answer is not None and answer[0] == 200:
            status = json.loads(answer[1])
            last = f"phase {status['phase']}, last error: {status['last_error']}"
            verdict = wait_verdict(status)
            if verdict is not None:
                print(
                    f"hotupgrade-agent: {verdict.message}",
                    file=sys.stdout if verdict.code == 0 else sys.stderr,
                )
                return verdict.code
        time.sleep(0.1)
    print(f"hotupgrade-agent: slot {config.slot} not ready after {limit:.0f}s ({last})", file=sys.stderr)
    return 2


def status() -> int:
    """Print the shared state file of the run dir."""
    from agent import contract

    path = os.path.join(os.environ.get(contract.ENV_RUN_DIR) or contract.RUN_DIR, contract.STATE_FILE)
    try:
        with open(path) as handle:
            print(json.dumps(json.load(handle), indent=2, sort_keys=True))
    except FileNotFoundError:
        print(f"hotupgrade-agent: no state at {path}", file=sys.stderr)
        return 1
    return 0


def capture() -> int:
    """Install the inbound redirects of HOTUPGRADE_CAPTURE_REDIRECTS in this network namespace, then check
    that the nat table holds them (agent/capture.py computes the rules)."""
    import subprocess

    from agent import capture as rules
    from agent import contract
    from agent.logs import EventLog

    log = EventLog("capture")
    try:
        redirects = rules.parse_redirects(os.environ.get(contract.ENV_CAPTURE_REDIRECTS, ""))
    except rules.CaptureConfigError as error:
        log.error("capture-config-invalid", variable=contract.ENV_CAPTURE_REDIRECTS, error=str(error))
        return 2

    def run(argv: Sequence[str], stdin: str = "") -> str:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True).stdout

    try:
        run(rules.RESTORE, rules.restore_input(redirects, run(rules.SAVE)))
        missing = rules.missing_rules(redirects, run(rules.SAVE))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or str(error)
        log.error("capture-failed", error=str(detail).strip())
        return 1
    if missing:
        log.error("capture-rules-missing", missing=missing)
        return 1
    for redirect in redirects:
        log.event("capture-redirect", app_port=redirect.app_port, envoy_port=redirect.envoy_port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one command; its exit code."""
    # Raw: the module docstring is the description, exit codes included, wrapped as written.
    parser = argparse.ArgumentParser(
        prog="hotupgrade-agent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="supervise this slot's Envoy (the sidecar image's entrypoint)")
    wait_parser = commands.add_parser("wait", help="wait until this slot's Envoy is LIVE (postStart hook)")
    wait_parser.add_argument(
        "--timeout", type=float, default=None, help="seconds (default HOTUPGRADE_WAIT_TIMEOUT)"
    )
    commands.add_parser("status", help="print the shared state file")
    commands.add_parser("capture", help="redirect the app's inbound ports to Envoy (capture init container)")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run()
    if args.command == "wait":
        return wait(args.timeout)
    if args.command == "capture":
        return capture()
    return status()
