"""What a kubelet does with an image change, by version, and how to tell that it did nothing. Pure.

Containers mode: every kubelet restarts a container whose image changed ("definition changed, will be
restarted"). nativeSidecar mode (init containers with restartPolicy Always): only kubelets from 1.32 do
(kubernetes#126525, "restart sidecar containers when their image changes"); older ones accept the new
spec and keep the old container running, forever. The controller refuses such upgrades up front when it
can read the node's kubelet version, and otherwise recognises the silence: after `kubelet_grace` the same
container runs on and the kubelet recorded no Event about replacing it (`replacing_since`).
"""

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from controller.observed import ContainerView, KubeletEvent, Seen, still_the_container

NATIVE_SIDECAR_IMAGE_CHANGE_SINCE = (1, 32)  # kubernetes#126525, released in v1.32.0
# What the kubelet records while it replaces a container (pkg/kubelet/events/event.go), not probe results
# (Unhealthy, ProbeWarning), which the container that runs on also gets.
REPLACING_REASONS = frozenset(
    {
        "Killing",
        "ExceededGracePeriod",
        "FailedPreStopHook",
        "Pulling",
        "Pulled",
        "Failed",
        "BackOff",
        "InspectFailed",
        "ErrImageNeverPull",
        "Created",
        "Started",
        "FailedPostStartHook",
    }
)
# An Event's time has whole seconds and comes from the node's clock, the record's from the controller's.
EVENT_CLOCK_SLACK = timedelta(seconds=2)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?")


def minor_version(version: str | None) -> tuple[int, int] | None:
    """(major, minor) of a kubeletVersion such as `v1.30.4` or `v1.32.1-eks-8a2c0d1`; None if unparsable."""
    found = _VERSION.match(version.strip()) if version else None
    return (int(found.group(1)), int(found.group(2))) if found else None


def restarts_native_sidecar_on_image_change(version: str | None) -> bool | None:
    """Whether a kubelet of `version` restarts a restartable init container whose image changed (None:
    unknown version)."""
    minor = minor_version(version)
    return None if minor is None else minor >= NATIVE_SIDECAR_IMAGE_CHANGE_SINCE


def unsupported_native_sidecar(version: str, node: str) -> str:
    """The refusal message for a native-sidecar upgrade on a kubelet that ignores image changes."""
    since = ".".join(map(str, NATIVE_SIDECAR_IMAGE_CHANGE_SINCE))
    return (
        f"node {node} runs kubelet {version}, which does not restart a native sidecar (init container "
        f"with restartPolicy Always) when its image changes; in-place upgrades in nativeSidecar mode "
        f"need kubelet v{since}+ (kubernetes#126525); upgrade the node or inject with mode: containers"
    )


def ignored_image_change(container: ContainerView, seen: Seen, *, waited: float, grace: float) -> bool:
    """The kubelet has not acted on `container`'s image change for `grace` seconds: the same container
    (containerID, restartCount, image ID) runs on, with no Waiting state (no pull, no create) meanwhile."""
    if waited <= grace or container.waiting_reason is not None:
        return False
    return seen.container_id is not None and still_the_container(container, seen)


def replacing_since(events: Iterable[KubeletEvent], container: str, since: datetime) -> KubeletEvent | None:
    """The kubelet's latest Event about replacing `container` from `since` on (less EVENT_CLOCK_SLACK), or
    None. The pod's status cannot show it: the kubelet publishes it when a sync starts, and the sync that
    starts a sidecar ends only with its postStart hook (kuberuntime_container.go startContainer)."""
    recent = [
        e
        for e in events
        if e.container == container
        and e.reason in REPLACING_REASONS
        and e.last_seen >= since - EVENT_CLOCK_SLACK
    ]
    return max(recent, key=lambda e: e.last_seen, default=None)
