"""The one exception type the data package raises for bad datasets and bad configs, and the
line reader that gives every label/list line its ``file:line`` location for messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class DatasetError(ValueError):
    """A dataset cannot be used as configured: a missing root, list, label or image file, a
    malformed label line (the message names ``file:line``), an empty split, or a dataset config
    that contradicts the data. Raised at construction wherever possible, before training."""


def read_bytes(path: str | Path, what: str = "file", missing: str = "") -> bytes:
    """The bytes of a file; DatasetError naming ``what`` and the path when it cannot be read
    (a directory, no permission, a NUL in the path), ``missing`` (default: "<what> <path> does
    not exist") when there is no such file."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DatasetError(missing or f"{what} {path} does not exist") from None
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise DatasetError(f"cannot read {what} {path}: {reason}") from None


def split_lines(text: str) -> list[str]:
    """The lines of a text as ``numbered_lines`` counts them (and Python's text mode, hence the
    reference readers, splits them): at ``\\r\\n``, ``\\r`` or ``\\n`` only; no empty last
    line after a final line break."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def decode_line(raw: bytes, where: str) -> str:
    """One line's bytes as UTF-8 text; DatasetError at ``where`` (``file:line``) naming the
    first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{where}: expected UTF-8 text, got byte 0x{raw[err.start]:02x} at column "
            f"{err.start + 1}"
        ) from None


def decode_text(data: bytes, path: str | Path) -> str:
    """A whole file's bytes as UTF-8 text; DatasetError naming ``path:line`` of the first line
    that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        for line_no, raw in enumerate(data.splitlines(), start=1):
            decode_line(raw, f"{path}:{line_no}")
        raise DatasetError(f"{path}: expected UTF-8 text") from None


def numbered_lines(
    path: str | Path, problems: list[str] | None = None
) -> Iterator[tuple[str, str]]:
    """The non-blank lines of a UTF-8 text file as ``(text, "path:line")``.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (as in text mode). A file that cannot be read
    or a line that is not UTF-8 raises DatasetError (``path:line`` and what was expected); with
    a ``problems`` list the messages are appended there instead and reading goes on with the
    next line (the dataset checker collects every problem)."""
    try:
        data = read_bytes(path)
    except DatasetError as err:
        if problems is None:
            raise
        problems.append(str(err))
        return
    for line_no, raw in enumerate(data.splitlines(), start=1):
        where = f"{path}:{line_no}"
        try:
            text = decode_line(raw, where)
        except DatasetError as err:
            if problems is None:
                raise
            problems.append(str(err))
            continue
        if text.strip():
            yield text, where


def absent(path: str | Path, want: str = "file", missing: str = "does not exist") -> str:
    """How ``path`` fails to be the ``want`` ("file" or "directory") a message expects:
    ``missing``, or what it is instead."""
    path = Path(path)
    if not path.exists():
        return missing
    return "is a directory, not a file" if want == "file" else "is a file, not a directory"
