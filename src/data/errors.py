"""The one exception type the data package raises for bad datasets and bad configs, and the
line reader that gives every label/list line its ``file:line`` location for messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class DatasetError(ValueError):
    """A dataset cannot be used as configured: a missing root, list, label or image file, a
    malformed label line (the message names ``file:line``), an empty split, or a dataset config
    that contradicts the data. Raised at construction wherever possible, before training."""


def numbered_lines(path: Path, errors: str = "strict") -> Iterator[tuple[str, str]]:
    """The non-blank lines of a text file as ``(text, "path:line")``."""
    with open(path, encoding="utf-8", errors=errors) as handle:
        for line_no, text in enumerate(handle, start=1):
            if text.strip():
                yield text, f"{path}:{line_no}"
