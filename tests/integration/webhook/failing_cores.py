"""`hotupgrade-webhook serve` whose pure cores fail: the real gunicorn, TLS, app and config reload.

The webhook's own code has no failure a request can provoke on purpose, so the failure goes in through
create_app's `plan` and `guard` parameters, where a bug in webhook.inject or webhook.guard would show;
all around it is what production runs. One worker, so every request meets the same config reload.

    python -m tests.integration.webhook.failing_cores --bind HOST:PORT --tls-cert F --tls-key F [--config F]
"""

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from flask import Flask
from prometheus_client import CollectorRegistry

from webhook import logs
from webhook.app import create_app
from webhook.config_source import ConfigSource
from webhook.metrics import Metrics
from webhook.server import ServeOptions, WebhookServer

PLAN_ERROR = "planner bug planted by tests/integration/webhook/failing_cores.py"
GUARD_ERROR = "guard bug planted by tests/integration/webhook/failing_cores.py"


def broken_plan(*args: object, **kwargs: object) -> NoReturn:
    raise LookupError(PLAN_ERROR)


def broken_guard(*args: object, **kwargs: object) -> NoReturn:
    raise TypeError(GUARD_ERROR)


class FailingCoresServer(WebhookServer):
    """WebhookServer with the broken cores handed to the app factory."""

    def load(self) -> Flask:
        metrics = Metrics(CollectorRegistry())
        source = ConfigSource(self.options.config)
        return create_app(source, metrics, plan=broken_plan, guard=broken_guard)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="failing_cores")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--tls-cert", required=True, type=Path)
    parser.add_argument("--tls-key", required=True, type=Path)
    parser.add_argument("--config", type=Path)
    args = parser.parse_args(argv)
    logs.configure()
    options = ServeOptions(
        bind=args.bind,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        config=args.config,
        workers=1,
        threads=2,
        read_timeout=10.0,
    )
    FailingCoresServer(options).run()  # gunicorn's arbiter leaves through sys.exit
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
