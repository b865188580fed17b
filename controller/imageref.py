"""Image references moved to releaseapi.imageref (the SidecarRelease parser checks spec.image with
them); kept importable from here for code written against this path.
"""

from releaseapi.imageref import (
    NAME_LIMIT,
    digest_of,
    is_reference,
    normalize_image,
    same_name,
)

__all__ = [
    "NAME_LIMIT",
    "digest_of",
    "is_reference",
    "normalize_image",
    "same_name",
]
