"""The readers of the LLAMAS, CurveLanes and custom (CULane-format) datasets behind one call,
for ``build_dataset``. CurveLanes images come in three sizes, each with its own crop: its samples
carry their ``ori_size`` and ``cut_height``, which the dataset's pipeline uses per image.
"""

from __future__ import annotations

from pathlib import Path

from .curvelanes import read_curvelanes_split
from .custom import read_custom_split
from .errors import DatasetError
from .llamas import read_llamas_split
from .samples import LaneSample

FORMAT_NAMES = ("llamas", "curvelanes", "custom")


def read_format_split(
    name: str, root: str | Path, split: str, image_size: tuple[int, int] | None = None
) -> list[LaneSample]:
    """The samples of ``split`` of dataset ``name`` (one of FORMAT_NAMES) under ``root``;
    ``image_size`` (w, h): the configured size, recorded on custom samples."""
    if name == "llamas":
        return read_llamas_split(root, split)
    if name == "curvelanes":
        return read_curvelanes_split(root, split)
    if name == "custom":
        return read_custom_split(root, split, image_size)
    raise DatasetError(f"unknown dataset format {name!r}: expected one of {FORMAT_NAMES}")
