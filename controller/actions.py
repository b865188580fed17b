"""What `next_step` can ask the shell to do. Every write also records the new upgrade record,
in the same JSON patch, so progress and the change it describes can never diverge.

`Observe` is not an action: the step function returns it when its decision reads something the
snapshot was taken without (the agents' status, the pre-pull pod, the node), so the shell asks only then.
"""

from dataclasses import dataclass

from controller.kubeletbackoff import Hold, Memory
from controller.record import UpgradeRecord
from controller.restarts import PlannedRestarts
from webhook.injection_status import InjectionStatus


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on the pod: type Normal or Warning, a CamelCase reason, a message."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Noop:
    """Nothing to do until the pod changes."""

    reason: str


@dataclass(frozen=True)
class WaitFor:
    """Look again after `requeue_after` seconds; write `record` first when it is given."""

    reason: str
    requeue_after: float
    record: UpgradeRecord | None = None
    event: Event | None = None
    hold: Hold | None = None  # waiting out the kubelet's crash-loop back-off before an image change


@dataclass(frozen=True)
class SetImage:
    """Test that `container` (at `spec_path`) runs `expect_image`, then set `image`, with the record."""

    container: str
    spec_path: str
    expect_image: str
    image: str
    record: UpgradeRecord
    event: Event | None
    requeue_after: float
    delete_pre_pull: str | None = None  # the pre-pull pod to remove once this patch landed
    planned: PlannedRestarts | None = None  # hotupgrade.io/planned-restarts, written in the same patch
    kubelet_backoff: Memory | None = None  # hotupgrade.io/kubelet-backoff after this start, likewise


class PatchStandbyImage(SetImage):
    """Step 3: the standby gets the target image."""


class ResetOldToEmpty(SetImage):
    """Step 6: the drained old container gets the empty image."""


class RollBack(SetImage):
    """Any failure before take-over: the standby goes back to the empty image."""


# A uid of no one: the pre-pull pod must name one, since runAsNonRoot cannot check a non-numeric USER.
PRE_PULL_DEFAULT_UID = 65532


@dataclass(frozen=True)
class PullAs:
    """Who the pre-pull pod pulls and runs as: the upgraded pod's pull secrets, ServiceAccount and ids."""

    service_account: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    run_as_user: int = PRE_PULL_DEFAULT_UID
    run_as_group: int | None = None


@dataclass(frozen=True)
class CreatePrePullPod:
    """Step 2: run the target image on the pod's node once so the swap does not wait on a pull."""

    pod_name: str
    node_name: str
    image: str
    record: UpgradeRecord | None  # written (pinned to the resourceVersion) before the pod is created
    requeue_after: float
    event: Event | None = None
    pull_as: PullAs = PullAs()


@dataclass(frozen=True)
class Fail:
    """Record phase Failed; also rewrite the status annotation when the new Envoy already serves."""

    record: UpgradeRecord
    event: Event
    status: InjectionStatus | None = None
    delete_pre_pull: str | None = None


@dataclass(frozen=True)
class Complete:
    """Record Completed and the swapped `hotupgrade.io/status` in one patch."""

    record: UpgradeRecord
    status: InjectionStatus
    event: Event


@dataclass(frozen=True)
class FenceTakeOver:
    """Ask the agent of `agent_slot` (the serving one) to fence `slot`'s take-over for attempt `token`
    before a rollback, or (`lift`) to lift `slot`'s fence before the slot is set to an image again.
    The answer is not trusted on its own: the next look reads the fence (or the take-over) in /status."""

    agent_slot: str
    slot: str
    token: str
    requeue_after: float
    lift: bool = False
    reason: str = ""
    record: UpgradeRecord | None = None  # never written: the fence lives in the run dir
    event: Event | None = None


@dataclass(frozen=True)
class Withdraw:
    """Drop an upgrade to `image` that its release withdrew while holding its swap: remove the record and
    the hold in one patch (the hold `test`ed), then the pre-pull pod. Nothing had changed: no failure."""

    image: str
    reason: str
    requeue_after: float
    delete_pre_pull: str | None = None
    record: None = None  # nothing is recorded: the pod is as before the upgrade began
    event: None = None


Action = Noop | WaitFor | SetImage | CreatePrePullPod | Fail | Complete | FenceTakeOver | Withdraw


@dataclass(frozen=True)
class Observe:
    """Decide again once the snapshot also holds the agents' status and/or this pre-pull pod."""

    agents: bool = False
    pre_pull_pod: str | None = None
    node: bool = False
    budget: bool = False  # the PodDisruptionBudget gate's verdict (asked last, just before a start)
    kubelet_events: bool = False  # the kubelet's Events on the pod (asked only when a change looks ignored)
