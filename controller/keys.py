"""Annotation keys the controller and the `hotupgrade` CLI use beyond the shared contract.

`hotupgrade.io/retry`, `hotupgrade.io/abort`, `hotupgrade.io/planned-restarts` and
`hotupgrade.io/kubelet-backoff` are controller-only (the agent never reads them), so they live here rather
than in docs/contract.md. Only the controller writes the last two (the webhook's guard keeps everyone else
from rewriting any `hotupgrade.io/*` annotation but the user's requests).
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

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_KUBELET_BACKOFF",
    "ANNOTATION_PLANNED_RESTARTS",
    "ANNOTATION_RETRY",
    "ANNOTATION_STATUS",
    "ANNOTATION_TARGET_IMAGE",
    "ANNOTATION_UPGRADE",
]
