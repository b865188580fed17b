"""Annotation keys the controller and the `hotupgrade` CLI use beyond the shared contract.

`hotupgrade.io/retry` and `hotupgrade.io/abort` are controller-only (the agent never reads them), so
they live here rather than in docs/contract.md.
"""

from typing import Final

from webhook.contract import ANNOTATION_STATUS, ANNOTATION_TARGET_IMAGE, ANNOTATION_UPGRADE

ANNOTATION_RETRY: Final = "hotupgrade.io/retry"
ANNOTATION_ABORT: Final = "hotupgrade.io/abort"

__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_RETRY",
    "ANNOTATION_STATUS",
    "ANNOTATION_TARGET_IMAGE",
    "ANNOTATION_UPGRADE",
]
