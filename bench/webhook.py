"""Admission throughput and latency of the real webhook over TLS, printed as JSON.

    python -m bench.webhook [--duration 10] [--concurrency 1,4,16,64] [--workers 2] [--threads 4]

Starts `hotupgrade-webhook serve` (gunicorn, real TLS, built-in defaults) on a free port and drives
POST /mutate with a real AdmissionReview (a pod that gets injected) using wrk, an independent C load
generator (Debian package `wrk`, installed by `make bench-webhook`), with keep-alive connections like
kube-apiserver's. No retries: every socket error, timeout and non-2xx counts as a failure. A /healthz
run on the same server gives the bare gunicorn+TLS ceiling for comparison. Target on 2 cores:
>= 1000 admissions/s with p99 <= 10 ms.
"""

import argparse
import base64
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from webhook.certs import issue_serving, new_ca

TARGET_RPS = 1000.0
TARGET_P99_MS = 10.0

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "generateName": "web-5d9c7f6b8-",
        "labels": {"app": "web", "pod-template-hash": "5d9c7f6b8"},
        "annotations": {"example.com/owner": "team-web"},
    },
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
    },
}

REVIEW: dict[str, Any] = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "5b0c8a3e-1d1e-4c52-9d0a-6f1c2b3a4d5e",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "bench",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": POD,
        "dryRun": False,
    },
}

WRK_SCRIPT = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_tls(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca = new_ca(now=now, validity=datetime.timedelta(days=2), common_name="bench CA")
    serving = issue_serving(ca=ca, dns_names=["localhost"], now=now, validity=datetime.timedelta(days=1))
    paths = (directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    for path, content in zip(paths, (ca.cert_pem, serving.cert_pem, serving.key_pem), strict=True):
        path.write_bytes(content)
    return paths


def wait_ready(url: str, ca: Path, process: subprocess.Popen[bytes]) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"webhook exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("webhook not ready after 60 s")


def check_injection(url: str, ca: Path) -> int:
    """One admission through the real path: it must come back with a patch. Returns the patch's op count."""
    context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(
        f"{url}/mutate", data=json.dumps(REVIEW).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        response = json.loads(answer.read())["response"]
    if not response.get("allowed") or "patch" not in response:
        raise SystemExit(f"the benchmark pod was not injected: {response}")
    return len(json.loads(base64.b64decode(response["patch"])))


def process_tree_cpu_seconds(root: int) -> float:
    """User+system CPU time of `root` and its direct children (the gunicorn master and workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        pid, ppid = int(stat.parent.name), int(fields[1])
        if root in (pid, ppid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def run_wrk(
    url: str, path: str, *, connections: int, duration: int, workdir: Path, server_pid: int
) -> dict[str, Any]:
    method, body = ("POST", json.dumps(json.dumps(REVIEW))) if path == "/mutate" else ("GET", "nil")
    script = workdir / f"wrk-{path.strip('/')}.lua"
    script.write_text(WRK_SCRIPT.format(method=method, body=body))
    threads = min(2, connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
    ]
    cpu_before = process_tree_cpu_seconds(server_pid)
    result = subprocess.run([*command, f"{url}{path}"], capture_output=True, text=True, check=True)
    server_cpu = process_tree_cpu_seconds(server_pid) - cpu_before
    line = next(x for x in result.stdout.splitlines() if x.startswith("WRK-JSON "))
    raw = json.loads(line.removeprefix("WRK-JSON "))
    failures = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    seconds = raw["duration_us"] / 1e6
    return {
        "path": path,
        "concurrency": connections,
        "requests": raw["requests"],
        "failures": failures,
        "per_second": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        # Server CPU per request: a figure the other tenants of this box cannot inflate much.
        "server_cpu_ms_per_request": round(server_cpu * 1000 / max(1, raw["requests"]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per concurrency level")
    parser.add_argument("--concurrency", default="1,4,16,64", help="comma-separated connection counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.webhook needs wrk (Debian package `wrk`): run `make bench-webhook`", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",")]
    cli = Path(sys.executable).parent / "hotupgrade-webhook"
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        workdir = Path(tmp)
        ca, cert, key = write_tls(workdir)
        port = free_port()
        url = f"https://localhost:{port}"
        log = (workdir / "webhook.log").open("wb")
        command = [
            str(cli),
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
        ]
        command += ["--workers", str(args.workers), "--threads", str(args.threads)]
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        # The server's INFO line per admission is part of the cost we measure, as in production.
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(url, ca, server)
            patch_ops = check_injection(url, ca)
            load_before = os.getloadavg()
            pid = server.pid
            run_wrk(
                url, "/mutate", connections=levels[0], duration=2, workdir=workdir, server_pid=pid
            )  # warm-up
            results = [
                run_wrk(
                    url, "/mutate", connections=c, duration=args.duration, workdir=workdir, server_pid=pid
                )
                for c in levels
            ]
            baseline = run_wrk(
                url,
                "/healthz",
                connections=max(levels),
                duration=args.duration,
                workdir=workdir,
                server_pid=pid,
            )
            load_after = os.getloadavg()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
            log.close()
    best = max(results, key=lambda r: r["per_second"])
    meeting = [
        r
        for r in results
        if r["per_second"] >= TARGET_RPS and r["p99_ms"] <= TARGET_P99_MS and not r["failures"]
    ]
    report = {
        "benchmark": "webhook-admission",
        "server": {
            "workers": args.workers,
            "threads": args.threads,
            "tls": "TLS 1.3, ECDSA P-256",
            "keepalive": True,
        },
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": load_after},
        "patch_ops_per_admission": patch_ops,
        "duration_s_per_level": args.duration,
        "mutate": results,
        "healthz_baseline": baseline,
        "best_admissions_per_s": best["per_second"],
        "mutate_vs_healthz_throughput": round(best["per_second"] / baseline["per_second"], 3),
        # What 2 idle cores would sustain at the measured CPU cost (ignores the load generator's share).
        "capacity_estimate_per_s_on_2_cores": round(
            2000 / min(r["server_cpu_ms_per_request"] for r in results if r["server_cpu_ms_per_request"] > 0)
        ),
        "target": {"admissions_per_s": TARGET_RPS, "p99_ms": TARGET_P99_MS},
        "levels_meeting_target": [r["concurrency"] for r in meeting],
        "meets_target": bool(meeting),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
