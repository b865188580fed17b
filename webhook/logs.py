"""Structured logs: one JSON object per line on stderr, an `event` name plus context fields."""

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "hotupgrade.webhook"


class JSONFormatter(logging.Formatter):
    """Render a record as one JSON line; context fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


class ClientTimeouts(logging.Filter):
    """Turn gunicorn's ERROR-with-traceback for a client that stalled into one warning event.

    A socket timeout is the client's doing (webhook.tls bounds every read), not a server fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, TimeoutError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info, record.exc_text = "client-timed-out", (), None, None
            record.fields = {"error": str(error)}
        return True


def configure(level: str = "INFO") -> None:
    """Send the webhook's logs to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    if not any(getattr(h, "_hotupgrade", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        handler._hotupgrade = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def event(name: str, /, *, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    """Log one event with its context fields."""
    logging.getLogger(LOGGER_NAME).log(level, name, extra={"fields": fields}, exc_info=exc_info)
