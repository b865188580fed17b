"""Kubernetes API timestamps (metav1.Time): RFC 3339 in, RFC 3339 with a `Z` out. Pure.

Shared by the SidecarRelease status (releaseapi.release) and the controller's upgrade record.
"""

from datetime import UTC, datetime


def parse_time(raw: str) -> datetime:
    """An RFC 3339 / ISO 8601 timestamp (`Z` or an offset; none means UTC) as an aware datetime.
    Raises ValueError when `raw` is not one."""
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as Kubernetes writes timestamps."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
