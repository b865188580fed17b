"""Label selectors moved to releaseapi.selector (the webhook shares them); kept importable from here
for code written against this path.
"""

from releaseapi.selector import (
    EVERYTHING,
    OPERATORS,
    InvalidSelectorError,
    LabelSelector,
    LabelSelectorJSON,
    Requirement,
    RequirementJSON,
    parse_selector,
)

__all__ = [
    "EVERYTHING",
    "OPERATORS",
    "InvalidSelectorError",
    "LabelSelector",
    "LabelSelectorJSON",
    "Requirement",
    "RequirementJSON",
    "parse_selector",
]
