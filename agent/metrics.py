"""The agent's Prometheus metrics, on a registry of its own (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, generate_latest

from agent import contract


class AgentMetrics:
    """The agent's counters and gauges (served on /metrics by the status server)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.takeovers = Counter(
            "hotupgrade_agent_takeovers",
            "Hot-restart takeovers this agent completed (its Envoy LIVE at epoch > 0).",
            registry=self.registry,
        )
        self.fresh_starts = Counter(
            "hotupgrade_agent_fresh_starts",
            "Envoys this agent started at epoch 0 because no Envoy of the pod was live to take over from.",
            registry=self.registry,
        )
        self.failures = Counter(
            "hotupgrade_agent_failures",
            "Failures by reason (start_failed, invalid_bootstrap, refused, newer_schema, bad_config, "
            "parent_hung, takeover_deadline, child_stalled, hung, crash, lock_timeout, drain_error).",
            ["reason"],
            registry=self.registry,
        )
        self.listener_mismatches = Counter(
            "hotupgrade_agent_listener_mismatches",
            "Take-overs after which the new Envoy's listeners (name, address) differed from the old one's.",
            registry=self.registry,
        )
        self.child_stalls = Counter(
            "hotupgrade_agent_child_stalls",
            "Times this agent found its Envoy's main thread stuck during a take-over (admin API silent), "
            "by action: abandon (ended, the old Envoy serves on) or unblock (sent it the Stats reply "
            "it waits for).",
            ["action"],
            registry=self.registry,
        )
        self.epoch = Gauge(
            "hotupgrade_agent_epoch", "Restart epoch of this slot's Envoy (-1: none).", registry=self.registry
        )
        self.epoch.set(-1)
        self.takeover_seconds = Gauge(
            "hotupgrade_agent_takeover_seconds",
            "Seconds from agent start to its Envoy LIVE, last start.",
            registry=self.registry,
        )
        self.drain_seconds = Gauge(
            "hotupgrade_agent_drain_seconds",
            "Seconds from our Envoy LIVE until the replaced Envoy exited, or of our own SIGTERM drain.",
            registry=self.registry,
        )
        self.phase = Enum(
            "hotupgrade_agent_phase",
            "Phase of this slot.",
            states=list(contract.PHASES),
            registry=self.registry,
        )
        self.phase.state("starting")

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
