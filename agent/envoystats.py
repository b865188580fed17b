"""Envoy's Prometheus counters as one series across hot restarts: pure parsing, re-basing and rendering.

Why: each Envoy process counts from zero. During a hot restart the child adds its parent's counter
*deltas since the parent last latched* (its periodic stats flush, hot_restarting_parent.cc
exportStatsToChild), and the parent's admin API closes when the child starts. So a scraper of Envoy's
own /stats/prometheus sees every counter drop at each upgrade (a reset) and then count the parent's
last flush interval again (a double count), and histograms start empty.

The agent serves Envoy's exposition with a per-series `base` added to every cumulative sample
(counters, histogram `_bucket`/`_sum`/`_count`). At a takeover the new agent reads the parent's
samples just before it spawns its Envoy (`parent`) and its own Envoy's samples once the child has
merged the parent's stats but before its workers start (`first`: only the parent's merged deltas):
  base(child) = base(parent) + parent - first
so the exported series continue from the parent's last value. What is not counted: the parent's
traffic between the parent's admin closing (ShutdownAdmin, the child's first step) and the child's
first merge (part of the child's start-up) and the parent's traffic after the child's last merge before
Terminate (Envoy drops it too). `parent` is the parent's last exposition before its admin closed, read
after the old agent stopped serving it (the other slot is `taking-over`), so no scrape saw more.
Gauges are left as Envoy reports them (the child accumulates the parent's while both run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The gauge Envoy accumulates across a hot restart: the child's reads parent + 1 once it merged.
GENERATION = "envoy_server_hot_restart_generation"
_CUMULATIVE_TYPES = {"counter": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _cumulative_names(text: str) -> set[str]:
    """Sample names of counter and histogram families, from the `# TYPE` lines."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        parts = line.split()
        if len(parts) == 4 and parts[3] in _CUMULATIVE_TYPES:
            names.update(parts[2] + suffix for suffix in _CUMULATIVE_TYPES[parts[3]])
    return names


def _sample(line: str) -> tuple[str, str, float] | None:
    """(metric name, series key = everything before the value, value) of one sample line."""
    if not line or line.startswith("#"):
        return None
    key, _, raw = line.rpartition(" ")
    if not key:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return key.split("{", 1)[0], key, value


def cumulative_samples(text: str) -> dict[str, float]:
    """Every counter and histogram sample of a Prometheus text exposition, by series key."""
    names = _cumulative_names(text)
    samples: dict[str, float] = {}
    for line in text.splitlines():
        parsed = _sample(line)
        if parsed is not None and parsed[0] in names:
            samples[parsed[1]] = parsed[2]
    return samples


def gauge(text: str, name: str) -> float | None:
    """The value of an unlabelled sample `name` (Envoy writes `name{} 0`), or None."""
    for line in text.splitlines():
        parsed = _sample(line)
        if parsed is not None and parsed[1] in (name, name + "{}"):
            return parsed[2]
    return None


def merged_parent(first: str, parent: str) -> bool:
    """Whether the child's exposition `first` already holds the parent's merged stats."""
    ours, theirs = gauge(first, GENERATION), gauge(parent, GENERATION)
    return ours is not None and theirs is not None and ours >= theirs + 1


def epoch_of(text: str) -> float | None:
    """The `--restart-epoch` of the Envoy that produced this exposition."""
    return gauge(text, "envoy_server_hot_restart_epoch")


@dataclass
class StatsWatch:
    """Collects the two expositions a takeover's base needs, from the admin port's answers in turn."""

    parent_epoch: int
    epoch: int
    parent: str | None = None
    first: str | None = None
    # `first` was read after our Envoy went LIVE: it also holds the child's own first requests, which the
    # base then leaves uncounted (the series steps flat, it never resets).
    late: bool = False
    # --skip-hot-restart-parent-stats: the child never merges its parent's stats, so `first` holds none of
    # them (empty) once ours answers, i.e. once the parent's admin closed on its last exposition.
    skip_parent_stats: bool = False

    @property
    def done(self) -> bool:
        """Both expositions are in; nothing more to read."""
        return self.first is not None

    def observe(self, text: str) -> None:
        """One answer of the admin port: the parent's latest, or ours once it merged the parent's."""
        if self.done:
            return
        epoch = epoch_of(text)
        if epoch == self.parent_epoch:
            self.parent = text
        elif epoch == self.epoch and self.parent is not None and self.skip_parent_stats:
            self.first = ""
        elif epoch == self.epoch and self.parent is not None and merged_parent(text, self.parent):
            self.first = text

    def observe_after_live(self, text: str) -> None:
        """Our LIVE Envoy's answer, for a watch that missed the short window between the child's merge and
        LIVE (a busy node can run both between two polls): taken as `first`, marked `late`."""
        if self.done:
            return
        self.observe(text)
        # Without the parent's merge (skip_parent_stats) `first` is empty whenever it is read: nothing lost.
        self.late = self.first is not None and not self.skip_parent_stats


def next_base(base: Mapping[str, float], *, parent: str, first: str) -> dict[str, float]:
    """The child's base from the parent's base and the two expositions (see the module docstring)."""
    before = cumulative_samples(parent)
    merged = cumulative_samples(first)
    keys = set(base) | set(before)
    result = {key: base.get(key, 0.0) + before.get(key, 0.0) - merged.get(key, 0.0) for key in keys}
    return {key: value for key, value in result.items() if value}


def _format(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def rebase(text: str, base: Mapping[str, float]) -> str:
    """The exposition with `base` added to its cumulative samples; everything else unchanged."""
    if not base:
        return text
    names = _cumulative_names(text)
    lines = []
    for line in text.splitlines():
        parsed = _sample(line)
        if parsed is not None and parsed[0] in names and parsed[1] in base:
            lines.append(f"{parsed[1]} {_format(parsed[2] + base[parsed[1]])}")
        else:
            lines.append(line)
    return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
