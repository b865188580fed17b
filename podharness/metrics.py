"""Read one sample out of a Prometheus text exposition (the agent's /metrics)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the sample `name` whose labels include `labels`, None if there is none."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items()):
                return float(s.value)
    return None
