"""The one exception type the data package raises for bad datasets and bad configs."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset cannot be used as configured: a missing root, list, label or image file, a
    malformed label line (the message names ``file:line``), an empty split, or a dataset config
    that contradicts the data. Raised at construction wherever possible, before training."""
