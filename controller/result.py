"""What one reconcile asks of the work queue, as controller-runtime's `reconcile.Result`. Pure."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """Look at the pod again after `requeue_after` seconds; None: only when the pod changes."""

    requeue_after: float | None = None

    @property
    def done(self) -> bool:
        return self.requeue_after is None


DONE = Result()


def requeue(after: float) -> Result:
    """Look again in `after` seconds (0 or less: at once)."""
    return Result(requeue_after=after)
