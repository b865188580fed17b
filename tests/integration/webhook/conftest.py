"""A real `hotupgrade-webhook serve` (gunicorn, real TLS) in a subprocess, and a client that trusts it."""

import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from webhook.certs import issue_serving, new_ca

FIXTURES = Path(__file__).parent / "fixtures"
CLI = Path(sys.executable).parent / "hotupgrade-webhook"
SERVE = (str(CLI), "serve")
REPO = Path(__file__).parents[3]
START_TIMEOUT = 60.0  # generous: the box is shared with a Kubernetes build


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def write_tls(directory: Path, *, common_name: str = "test CA") -> TLSFiles:
    """A fresh CA and a serving certificate for localhost, as PEM files."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = new_ca(now=now, validity=datetime.timedelta(days=2), common_name=common_name)
    serving = issue_serving(ca=ca, dns_names=["localhost"], now=now, validity=datetime.timedelta(days=1))
    files = TLSFiles(ca=directory / "ca.crt", cert=directory / "tls.crt", key=directory / "tls.key")
    files.ca.write_bytes(ca.cert_pem)
    files.cert.write_bytes(serving.cert_pem)
    files.key.write_bytes(serving.key_pem)
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class WebhookProcess:
    """`hotupgrade-webhook serve` (or `command`, taking the same options) on a free port.

    stderr (the JSON logs) goes to a file; the process runs in the repository so `python -m tests...` works.
    """

    def __init__(
        self,
        workdir: Path,
        tls: TLSFiles,
        config: dict[str, Any] | None,
        extra_args: list[str],
        command: Sequence[str] = SERVE,
    ) -> None:
        self.workdir = workdir
        self.tls = tls
        self.port = free_port()
        self.url = f"https://localhost:{self.port}"
        self.config_path = workdir / "config.yaml"
        args = [*command, "--bind", f"127.0.0.1:{self.port}", "--tls-cert", str(tls.cert)]
        args += ["--tls-key", str(tls.key), *extra_args]
        if config is not None:
            self.config_path.write_text(yaml.safe_dump(config))
            args += ["--config", str(self.config_path)]
        self.log_path = workdir / "webhook.log"
        self.log = self.log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"webhook exited with {self.process.returncode}: {self.logs()}")
            try:
                with self.client() as client:
                    if client.get("/readyz").status_code == 200:
                        return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"webhook not ready after {START_TIMEOUT}s: {self.logs()}")

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace the config file the way a ConfigMap volume's symlink swap does: atomically."""
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config))
        os.replace(tmp, self.config_path)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=client_context(self.tls.ca), timeout=30.0, **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def start_webhook(
    workdir: Path,
    *,
    config: dict[str, Any] | None = None,
    tls: TLSFiles | None = None,
    extra_args: list[str] | None = None,
    command: Sequence[str] = SERVE,
) -> WebhookProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    server = WebhookProcess(workdir, tls or write_tls(workdir / "tls"), config, extra_args or [], command)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """One server with built-in defaults, shared by a module's tests."""
    server = start_webhook(tmp_path_factory.mktemp("webhook"))
    yield server
    server.stop()


@pytest.fixture
def client(webhook: WebhookProcess) -> Iterator[httpx.Client]:
    with webhook.client() as c:
        yield c


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))
