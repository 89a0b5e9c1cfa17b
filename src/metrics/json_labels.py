"""Reading JSON label files with ``file:line`` error messages (LLAMAS and CurveLanes labels).

``json.loads`` reports the line of a syntax error but not where a well-formed value sits, and
labels are validated after parsing. So a problem is first described by the JSON path of the
value (``("lanes", 2, "markers", 0, "pixel_start", "y")``); only then, when the message is built,
``value_line`` walks the text along that path to find the value's line. Valid files never pay
for it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from src.metrics.files import FileFormatError

JsonPath = Sequence[str | int]

_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def load_json_label(path: str | os.PathLike, data: bytes | None = None) -> tuple[Any, str]:
    """(parsed value, text) of a UTF-8 JSON file; FileFormatError naming ``file:line`` for
    bytes that are not UTF-8 and for invalid JSON. OSError when the file cannot be read."""
    if data is None:
        data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise FileFormatError(
            f"{path}:{line}: expected UTF-8 JSON, got byte 0x{data[err.start]:02x}"
        ) from None
    try:
        return json.loads(text), text
    except json.JSONDecodeError as err:
        raise FileFormatError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg} at column {err.colno})"
        ) from None
    except RecursionError:
        raise FileFormatError(f"{path}:1: not valid JSON: nested too deeply") from None


def path_text(keys: JsonPath) -> str:
    """``("lanes", 2, "markers")`` -> ``lanes[2].markers`` (for messages)."""
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "the top-level value"


def _skip(text: str, index: int) -> int:
    return _WHITESPACE.match(text, index).end()


def _member_offset(text: str, index: int, key: str) -> int | None:
    """Offset of the value of member ``key`` of the object starting at ``index`` (the last
    occurrence, which is the one ``json.loads`` keeps)."""
    if text[index] != "{":
        return None
    index, found = _skip(text, index + 1), None
    while text[index] == '"':
        name, index = scanstring(text, index + 1)
        index = _skip(text, index)
        if text[index] != ":":
            return None
        index = _skip(text, index + 1)
        if name == key:
            found = index
        _, index = _DECODER.raw_decode(text, index)
        index = _skip(text, index)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return found


def _element_offset(text: str, index: int, position: int) -> int | None:
    if text[index] != "[":
        return None
    index = _skip(text, index + 1)
    for _ in range(position):
        _, index = _DECODER.raw_decode(text, index)
        index = _skip(text, index)
        if text[index] != ",":
            return None
        index = _skip(text, index + 1)
    return index


def value_line(text: str, keys: JsonPath) -> int:
    """Line (from 1) where the value at ``keys`` starts in the JSON ``text``; the line of the
    deepest part of the path that exists (1 when the text cannot be walked)."""
    index = _skip(text, 0)
    try:
        for key in keys:
            found = (
                _element_offset(text, index, key)
                if isinstance(key, int)
                else _member_offset(text, index, key)
            )
            if found is None:
                break
            index = found
    except (IndexError, ValueError):  # not a well-formed document: keep the last position
        pass
    return text.count("\n", 0, index) + 1


def label_error(
    path: str | os.PathLike, text: str, keys: JsonPath, message: str
) -> FileFormatError:
    """FileFormatError ``"<path>:<line>: <json path>: <message>"``."""
    return FileFormatError(f"{path}:{value_line(text, keys)}: {path_text(keys)}: {message}")
