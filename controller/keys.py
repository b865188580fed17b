"""Annotation keys the controller and the `hotupgrade` CLI use beyond the shared contract.

`hotupgrade.io/retry`, `hotupgrade.io/abort`, `hotupgrade.io/planned-restarts`,
`hotupgrade.io/kubelet-backoff` and `hotupgrade.io/swap-hold` are controller-only (the agent never reads
them), so they live here rather than in docs/contract.md. Only the controller writes the last three (the
webhook's guard keeps everyone else from rewriting any `hotupgrade.io/*` annotation but the user's requests).
"""

from typing import Final

from webhook.contract import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE

ANNOTATION_RETRY: Final = "hotupgrade.io/retry"
ANNOTATION_ABORT: Final = "hotupgrade.io/abort"
# JSON map container name -> restarts the controller caused by changing that container's image.
ANNOTATION_PLANNED_RESTARTS: Final = "hotupgrade.io/planned-restarts"
# JSON: the kubelet's crash-loop back-off entries the controller's image changes caused, per container and
# image, for the last ~10 minutes (controller.kubeletbackoff).
ANNOTATION_KUBELET_BACKOFF: Final = "hotupgrade.io/kubelet-backoff"
# The image whose swap a SidecarRelease holds back: its upgrade may check and pre-pull, but sets the standby
# to that image only once the release removes the hold (controller.rollout: the at-risk window).
ANNOTATION_SWAP_HOLD: Final = "hotupgrade.io/swap-hold"

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_KUBELET_BACKOFF",
    "ANNOTATION_PLANNED_RESTARTS",
    "ANNOTATION_RETRY",
    "ANNOTATION_STATUS",
    "ANNOTATION_SWAP_HOLD",
    "ANNOTATION_TARGET_IMAGE",
    "ANNOTATION_UPGRADE",
]
