"""`make demo`: three hot upgrades of a real Envoy under load on this machine, then a short report.

Sets up a pod (network namespace, shared /dev/shm and run dir, app container, sidecar pair), drives
HTTP/1.1, HTTP/2 and long-lived TCP load at it, upgrades a -> b -> a -> b, and prints what happened,
ending with the same JSON object as `python -m bench.hotupgrade`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.hotupgrade import BenchConfig, require_root, run
from podharness.loadstats import disallowed_failures

UPGRADES = 3


def why_failed(figures: dict[str, Any]) -> list[str]:
    """What the run must not have seen (empty: PASS). The rule is podharness.loadstats.disallowed_failures,
    as in the e2e suite: only TCP echoes cut by the old Envoys' FINs; raw TCP is never handed over."""
    return disallowed_failures(
        figures,
        tcp_connections=int(figures["load_shape"]["ours"]["tcp_connections"]),
        upgrades=int(figures["upgrades"]),
    )


def passed(figures: dict[str, Any]) -> bool:
    """PASS: nothing that why_failed names."""
    return not why_failed(figures)


def report(figures: dict[str, Any]) -> list[str]:
    """The human-readable lines above the JSON."""
    takeover = figures["takeover_s"]
    kinds = figures["by_kind"]
    why = why_failed(figures)
    verdict = "FAIL" if why else "PASS"
    cut = figures["tcp_eof_mid_echo"]
    return [
        "",
        f"{verdict}: {figures['upgrades']} hot upgrades, epochs {figures['epochs']}",
        *(f"  not allowed: {line}" for line in why),
        f"  takeover (agent start -> new Envoy LIVE): {takeover['each']} s, max {takeover['max']} s",
        f"  old Envoy exit after parent-shutdown {figures['drain_configured_s']['parent_shutdown']} s: "
        f"overhead {figures['drain_overhead_s']['each']} s",
        f"  requests: {figures['requests']} "
        f"(HTTP/1.1 {kinds['http1']['ok']} ok, HTTP/2 {kinds['http2']['ok']} ok), "
        f"failed: {figures['failed']}, latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms",
        f"  TCP: {figures['tcp_echoes']} echoes; connections closed by the old Envoy's exit: "
        f"{figures['tcp_clean_closes']} idle, {cut} with an echo in flight (expected: raw TCP is not "
        f"handed over); {figures['tcp_unclean_closes'] - cut} reset, "
        f"{figures['tcp_failed'] - min(figures['tcp_failed'], cut)} other TCP failures",
        f"  agent RSS: max {figures['agent_rss_mb']['max']} MB",
        "",
    ]


def main() -> None:
    require_root()
    print(f"demo: {UPGRADES} hot upgrades of Envoy under HTTP/1.1 + HTTP/2 + TCP load", flush=True)
    with tempfile.TemporaryDirectory(prefix="hotupgrade-demo-") as tmp:
        figures = run(
            BenchConfig(upgrades=UPGRADES), Path(tmp), progress=lambda line: print(line, flush=True)
        )
    print("\n".join(report(figures)))
    print(json.dumps(figures, sort_keys=True))
    if not passed(figures):
        sys.exit(1)


if __name__ == "__main__":
    main()
