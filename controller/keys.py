"""Annotation keys the controller and the `hotupgrade` CLI use beyond the shared contract.

`hotupgrade.io/retry`, `hotupgrade.io/abort` and `hotupgrade.io/planned-restarts` are controller-only
(the agent never reads them), so they live here rather than in docs/contract.md. Only the controller
writes `hotupgrade.io/planned-restarts` (the webhook's guard keeps everyone else from rewriting it).
"""

from typing import Final

from webhook.contract import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE

ANNOTATION_RETRY: Final = "hotupgrade.io/retry"
ANNOTATION_ABORT: Final = "hotupgrade.io/abort"
# JSON map container name -> restarts the controller caused by changing that container's image.
ANNOTATION_PLANNED_RESTARTS: Final = "hotupgrade.io/planned-restarts"

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PLANNED_RESTARTS",
    "ANNOTATION_RETRY",
    "ANNOTATION_STATUS",
    "ANNOTATION_TARGET_IMAGE",
    "ANNOTATION_UPGRADE",
]
