"""Independent load clients from Debian (`wrk` for HTTP/1.1 keep-alive, `h2load` for HTTP/2) beside ours.

Their counts are the ones users trust. wrk runs until SIGINT and then prints its totals. h2load stops
a client for good after a GOAWAY instead of reconnecting, so it runs in short back-to-back rounds and
the rounds are summed. Both are optional: `make load-tools` installs them (apt: wrk, nghttp2-client).

h2load's `errored` counts every stream that closed with an error code, including requests it had queued
but never sent when a GOAWAY arrived: nghttp2 then refuses them locally with REFUSED_STREAM (safe to
retry, RFC 9113 section 8.7; h2load does not retry). Its per-request log (--log-file) tells the two apart:
a request never sent has start time 0 (nghttp2 src/h2load.cc records it in before_frame_send_callback).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TypedDict, cast

_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}


class WrkResult(TypedDict):
    requests: int
    socket_errors: int
    non_2xx_3xx: int


class H2loadResult(TypedDict):
    rounds: int
    requests: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    non_2xx: int
    errored_unsent: int  # errored streams h2load never sent (refused locally after a GOAWAY)
    errored_sent: int  # errored streams whose request went out: what the server failed


def parse_wrk(text: str) -> WrkResult:
    """Totals from wrk's report; socket errors are connect + read + write + timeout."""
    done = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if done is None:
        raise ValueError(f"not a wrk report: {text[:200]!r}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return WrkResult(
        requests=int(done.group(1)),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def failed_streams(log: str) -> tuple[int, int]:
    """(never sent, sent) among the failed streams of an h2load --log-file: `start<TAB>status<TAB>usec`."""
    unsent = sent = 0
    for line in log.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[1] == "-1":
            if fields[0] == "0":
                unsent += 1
            else:
                sent += 1
    return unsent, sent


def parse_h2load(text: str, log: str = "") -> H2loadResult:
    """Totals of one h2load run; with its --log-file, errored streams split into never sent and sent."""
    line = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if line is None or codes is None:
        raise ValueError(f"not an h2load report: {text[-300:]!r}")
    total, succeeded, failed, errored, timeout = (int(g) for g in line.groups())
    unsent, sent = failed_streams(log)
    return H2loadResult(
        rounds=1,
        requests=total,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        non_2xx=sum(int(g) for g in codes.groups()[1:]),
        errored_unsent=unsent,
        errored_sent=sent,
    )


def add_h2load(a: H2loadResult, b: H2loadResult) -> H2loadResult:
    return H2loadResult(
        rounds=a["rounds"] + b["rounds"],
        requests=a["requests"] + b["requests"],
        succeeded=a["succeeded"] + b["succeeded"],
        failed=a["failed"] + b["failed"],
        errored=a["errored"] + b["errored"],
        timeout=a["timeout"] + b["timeout"],
        non_2xx=a["non_2xx"] + b["non_2xx"],
        errored_unsent=a["errored_unsent"] + b["errored_unsent"],
        errored_sent=a["errored_sent"] + b["errored_sent"],
    )


def available() -> bool:
    return shutil.which("wrk") is not None and shutil.which("h2load") is not None


class IndependentClients:
    """wrk and h2load against one URL until stop(); a client with 0 connections does not run."""

    def __init__(
        self,
        url: str,
        *,
        wrk_connections: int = 4,
        h2load_clients: int = 4,
        h2load_streams: int = 4,
        h2load_round_s: int = 3,
    ) -> None:
        self.url = url
        self.wrk_connections = wrk_connections
        self.h2load_clients = h2load_clients
        self.h2load_streams = h2load_streams
        self.round_s = h2load_round_s
        self._wrk: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._h2 = cast(H2loadResult, dict.fromkeys(H2loadResult.__annotations__, 0))  # no rounds yet
        self._h2_thread = threading.Thread(target=self._h2load_rounds, name="h2load", daemon=True)

    def start(self) -> IndependentClients:
        if self.wrk_connections > 0:
            self._wrk = subprocess.Popen(
                ["wrk", "-t1", f"-c{self.wrk_connections}", "-d3600s", "--timeout", "10s", self.url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        if self.h2load_clients > 0:
            self._h2_thread.start()
        return self

    def _h2load_rounds(self) -> None:
        with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
            log = Path(tmp) / "requests.log"
            while not self._stop.is_set():
                log.unlink(missing_ok=True)  # h2load appends to its log file
                done = subprocess.run(
                    [
                        "h2load",
                        f"-c{self.h2load_clients}",
                        f"-m{self.h2load_streams}",
                        f"-D{self.round_s}",
                        "-T10",
                        f"--log-file={log}",
                        self.url,
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=self.round_s + 60,
                )
                requests = log.read_text() if log.exists() else ""
                self._h2 = add_h2load(self._h2, parse_h2load(done.stdout, requests))

    def stop(self) -> dict[str, WrkResult | H2loadResult]:
        """Stop both (wrk prints its totals on SIGINT; the current h2load round finishes)."""
        self._stop.set()
        results: dict[str, WrkResult | H2loadResult] = {}
        if self._wrk is not None:
            self._wrk.send_signal(signal.SIGINT)
            out, _ = self._wrk.communicate(timeout=60)
            results["wrk"] = parse_wrk(out)
        if self._h2_thread.ident is not None:
            self._h2_thread.join(timeout=self.round_s + 70)
            results["h2load"] = self._h2
        return results
