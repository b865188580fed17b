"""Run the app under gunicorn over TLS: the gunicorn configuration lives here.

Workers: gthread (threads share one Python process, so CPU-bound admissions scale with processes, not
threads). With more than one worker, prometheus-client runs in multiprocess mode: this module sets
PROMETHEUS_MULTIPROC_DIR (a fresh private directory) *before* prometheus_client is imported, and
clears a dead worker's files from `child_exit`.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from webhook import logs


@dataclass(frozen=True)
class ServeOptions:
    """What `hotupgrade-webhook serve` was asked to run."""

    bind: str
    tls_cert: Path
    tls_key: Path
    config: Path | None
    workers: int
    threads: int
    read_timeout: float
    releases: Path | None = None  # the release cache's snapshot file (webhook.releasecache)


class WebhookServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application configured in code, not from a gunicorn.conf.py."""

    def __init__(self, options: ServeOptions, *, last_good_config: Path | None = None) -> None:
        self.options = options
        self.last_good_config = last_good_config
        # Imported here, after the multiprocess decision, because prometheus_client reads the env at import.
        from webhook.tls import ReloadingContext

        self.tls = ReloadingContext(options.tls_cert, options.tls_key, io_timeout=options.read_timeout)
        super().__init__()

    def load_config(self) -> None:
        tls = self.tls

        def ssl_context(conf: Any, default_factory: Any) -> Any:
            return tls.context()

        def child_exit(server: Any, worker: Any) -> None:
            if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

        settings: dict[str, Any] = {
            "bind": [self.options.bind],
            "workers": self.options.workers,
            "worker_class": "gthread",
            "threads": self.options.threads,
            "certfile": str(self.options.tls_cert),
            "keyfile": str(self.options.tls_key),
            "ssl_context": ssl_context,
            "child_exit": child_exit,
            # kube-apiserver keeps connections to webhooks alive; so should we, but not forever.
            "keepalive": 30,
            "timeout": 30,
            "graceful_timeout": 20,
            "accesslog": None,  # one `mutate` event per admission is logged by the app instead
            "errorlog": "-",
            "loglevel": "warning",
            # gunicorn's own messages as JSON lines too, so the whole stream parses.
            "logconfig_dict": {
                "version": 1,
                "disable_existing_loggers": False,
                "formatters": {"json": {"()": "webhook.logs.JSONFormatter"}},
                "filters": {"client_timeouts": {"()": "webhook.logs.ClientTimeouts"}},
                "handlers": {
                    "stderr": {
                        "class": "logging.StreamHandler",
                        "formatter": "json",
                        "stream": "ext://sys.stderr",
                    }
                },
                "loggers": {
                    "gunicorn.error": {
                        "handlers": ["stderr"],
                        "filters": ["client_timeouts"],
                        "level": "WARNING",
                        "propagate": False,
                    },
                    "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
                },
                "root": {"handlers": ["stderr"], "level": "WARNING"},
            },
            "proc_name": "hotupgrade-webhook",
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from prometheus_client import CollectorRegistry

        from webhook.app import create_app
        from webhook.config_source import ConfigSource
        from webhook.metrics import Metrics
        from webhook.release_source import ReleaseCacheCollector, ReleaseSource

        metrics = Metrics(CollectorRegistry())
        releases = None
        if self.options.releases is not None:
            releases = ReleaseSource(self.options.releases)
            metrics.add_collector(ReleaseCacheCollector(releases))
        source = ConfigSource(
            self.options.config,
            on_reload=lambda result: metrics.config_reloads.labels(result).inc(),
            last_good=self.last_good_config,
        )
        return create_app(source, metrics, releases=releases)


def prepare_multiprocess_metrics(workers: int) -> None:
    """Give prometheus-client a private multiprocess directory when there is more than one worker."""
    if workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hotupgrade-webhook-metrics-")


def serve(options: ServeOptions) -> int:
    """Validate the config, then run gunicorn until it is told to stop."""
    from webhook.config import WebhookConfig, config_from_yaml, read_config_text

    logs.configure()
    # Fail fast, before forking workers. Workers started after the file went bad serve the last good
    # version, kept in a file of this server's own (webhook.config_source).
    text = read_config_text(options.config) if options.config is not None else None
    config = WebhookConfig() if text is None else config_from_yaml(text, source=str(options.config))
    state_dir = Path(tempfile.mkdtemp(prefix="hotupgrade-webhook-config-"))
    last_good = None if text is None else state_dir / "last-good.yaml"
    if last_good is not None and text is not None:
        last_good.write_text(text)
    prepare_multiprocess_metrics(options.workers)
    logs.event(
        "serving",
        bind=options.bind,
        workers=options.workers,
        threads=options.threads,
        config=str(options.config) if options.config else "defaults",
        releases=str(options.releases) if options.releases else None,
        hash=config.injection_hash(),
    )
    try:
        WebhookServer(options, last_good_config=last_good).run()  # gunicorn's arbiter leaves through sys.exit
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
        if metrics_dir.startswith(tempfile.gettempdir()) and "hotupgrade-webhook-metrics-" in metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
