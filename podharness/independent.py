"""Independent load clients from Debian (`wrk` for HTTP/1.1 keep-alive, `h2load` for HTTP/2) beside ours.

Their counts are the ones users trust. wrk runs until SIGINT and then prints its totals. h2load stops
a client for good after a GOAWAY instead of reconnecting, so it runs in short back-to-back rounds and
the rounds are summed. Both are optional: `make load-tools` installs them (apt: wrk, nghttp2-client).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
from typing import TypedDict

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


def parse_h2load(text: str) -> H2loadResult:
    """Totals of one h2load run."""
    line = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        text,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if line is None or codes is None:
        raise ValueError(f"not an h2load report: {text[-300:]!r}")
    total, succeeded, failed, errored, timeout = (int(g) for g in line.groups())
    return H2loadResult(
        rounds=1,
        requests=total,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        non_2xx=sum(int(g) for g in codes.groups()[1:]),
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
    )


def available() -> bool:
    return shutil.which("wrk") is not None and shutil.which("h2load") is not None


class IndependentClients:
    """wrk and h2load against one URL until stop()."""

    def __init__(self, url: str, *, connections: int = 4, h2load_round_s: int = 3) -> None:
        self.url = url
        self.connections = connections
        self.round_s = h2load_round_s
        self._wrk: subprocess.Popen[str] | None = None
        self._stop = threading.Event()
        self._h2: H2loadResult = H2loadResult(
            rounds=0, requests=0, succeeded=0, failed=0, errored=0, timeout=0, non_2xx=0
        )
        self._h2_thread = threading.Thread(target=self._h2load_rounds, name="h2load", daemon=True)

    def start(self) -> IndependentClients:
        self._wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{self.connections}", "-d3600s", "--timeout", "10s", self.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._h2_thread.start()
        return self

    def _h2load_rounds(self) -> None:
        while not self._stop.is_set():
            done = subprocess.run(
                ["h2load", f"-c{self.connections}", "-m4", f"-D{self.round_s}", "-T10", self.url],
                capture_output=True,
                text=True,
                check=False,
                timeout=self.round_s + 60,
            )
            self._h2 = add_h2load(self._h2, parse_h2load(done.stdout))

    def stop(self) -> dict[str, WrkResult | H2loadResult]:
        """Stop both (wrk prints its totals on SIGINT; the current h2load round finishes)."""
        self._stop.set()
        if self._wrk is None:
            raise RuntimeError("not started")
        self._wrk.send_signal(signal.SIGINT)
        out, _ = self._wrk.communicate(timeout=60)
        self._h2_thread.join(timeout=self.round_s + 70)
        return {"wrk": parse_wrk(out), "h2load": self._h2}
