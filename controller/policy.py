"""What the operator configures for upgrades: image allowlist, timeouts, pre-pull. Pure values."""

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageAllowlist:
    """Images a target may name: any prefix match or full regex match; empty allows everything."""

    prefixes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @property
    def allows_everything(self) -> bool:
        return not self.prefixes and not self.patterns

    def allows(self, image: str) -> bool:
        if self.allows_everything:
            return True
        if any(image.startswith(prefix) for prefix in self.prefixes):
            return True
        return any(re.fullmatch(pattern, image) for pattern in self.patterns)


@dataclass(frozen=True)
class Policy:
    """Knobs of the step machine; the defaults suit a real cluster, tests pass small timeouts."""

    allowlist: ImageAllowlist = field(default_factory=ImageAllowlist)
    step_timeout: float = 300.0  # checks, pre-pull, take-over, reset, rollback: each at most this long
    drain_grace: float = 120.0  # draining may last the old Envoy's parent-shutdown time plus this
    default_parent_shutdown: int = 900  # Envoy's default, when the container env does not say
    poll_interval: float = 2.0  # requeue while waiting on something the pod watch does not show
    # Pull the target on the node before the swap, so the pod is NotReady only for the restart itself.
    pre_pull: bool = True
    # A kubelet that shows no reaction to an image change (same container, no Waiting) for this long
    # ignored it (native sidecars before 1.32): roll back and say so instead of timing out.
    kubelet_grace: float = 30.0
