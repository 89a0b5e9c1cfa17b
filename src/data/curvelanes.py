"""CurveLanes reader: ``<root>/<split>/<split>.txt`` + ``labels/<md5>.lines.json`` -> LaneSample.

Layout (SoulmateB/CurveLanes): ``<split>/images/<md5>.jpg``, ``<split>/labels/<md5>.lines.json``
and ``<split>/<split>.txt`` listing ``images/<md5>.jpg``, for train, valid and test (test labels
are not public; a test split without a labels folder gives samples without lanes, for writing
predictions). Labels hold ``{"Lines": [[{"x": "2079.41", "y": "1439.0"}, ...], ...]}`` with
string coordinates, in file order (``src.metrics.files_curvelanes`` parses them).

Images come in three sizes, which labels do not record, so each image's size is read from its
header when the split is read. The crop differs per size (CondLaneNet, CLRerNet): the bottom
800 / 480 / 352 rows are kept, i.e. ``cut_height`` 640 / 180 / 368 for 2560x1440 / 1570x660 /
1280x720, then resized to the network input. Each sample carries its ``ori_size`` and
``cut_height``; an image of another size is an error.

``lanes`` are the ground truth as the metric uses it (lanes without points left out);
``train_lanes`` apply CULane's training filter (``culane.culane_train_lanes``: points with a
negative coordinate and repeated points dropped, lanes with fewer than 3 points dropped, points
top -> bottom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.metrics.files import FileFormatError
from src.metrics.files_curvelanes import (
    CURVELANES_DOWNLOAD_HINT,
    curvelanes_label_path,
    image_size,
    read_curvelanes_label,
)

from .culane import culane_train_lanes
from .errors import DatasetError, numbered_lines
from .samples import LaneSample

# (width, height) -> rows cut from the top (the crop keeps the bottom 800 / 480 / 352 rows).
CROP_OFFSETS = {(2560, 1440): 640, (1570, 660): 180, (1280, 720): 368}
# Split name -> folder ("val" as the launcher's configs call it).
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
DOWNLOAD_HINT = CURVELANES_DOWNLOAD_HINT


def expected_layout(folder: str = "<split>") -> str:
    """What a CurveLanes root should contain, for error messages."""
    return (
        f"{folder}/{folder}.txt listing images/<md5>.jpg, {folder}/images/ and "
        f"{folder}/labels/<md5>.lines.json (for train, valid and test)"
    )


def split_folder(split: str) -> str:
    """The folder of a split (``val`` -> ``valid``); DatasetError for an unknown name."""
    if split not in SPLIT_FOLDERS:
        raise DatasetError(
            f"unknown CurveLanes split {split!r}: expected one of {', '.join(SPLIT_FOLDERS)}"
        )
    return SPLIT_FOLDERS[split]


def size_problem(size: tuple[int, int]) -> str:
    """Why an image of (height, width) ``size`` cannot be used."""
    sizes = ", ".join(f"{w}x{h} (cut {cut})" for (w, h), cut in CROP_OFFSETS.items())
    return f"is {size[1]}x{size[0]}; CurveLanes images are {sizes}: the crop depends on the size"


def load_lanes(label_path: str) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(ground-truth lanes, training lanes) of a label file; DatasetError names file:line."""
    try:
        lanes = read_curvelanes_label(label_path)
    except FileFormatError as err:
        raise DatasetError(str(err)) from None
    except OSError as err:
        raise DatasetError(f"cannot read label file {label_path}: {err.strerror or err}") from None
    return tuple(lanes), tuple(culane_train_lanes(lanes))


def read_list(split_dir: Path) -> list[tuple[str, str]]:
    """(entry, ``file:line``) per non-blank line of ``<split_dir>/<split>.txt``."""
    list_path = split_dir / f"{split_dir.name}.txt"
    if not list_path.is_file():
        raise DatasetError(
            f"CurveLanes list {list_path} is missing: a CurveLanes root holds "
            f"{expected_layout(split_dir.name)} ({DOWNLOAD_HINT})"
        )
    entries = []
    for text, where in numbered_lines(list_path):
        entry = text.split()[0].lstrip("/")
        if not entry:
            raise DatasetError(f"{where}: expected an image path such as images/<md5>.jpg")
        entries.append((entry, where))
    return entries


def image_crop(img_path: Path, where: str) -> tuple[tuple[int, int] | None, int | None]:
    """((height, width), cut_height) of an image from its header; (None, None) when the file
    is missing (the dataset reports or skips missing images); DatasetError for an unreadable
    header or a size without a known crop."""
    if not img_path.is_file():
        return None, None
    try:
        size = image_size(img_path)
    except OSError as err:
        raise DatasetError(f"{where}: {err}") from None
    cut = CROP_OFFSETS.get((size[1], size[0]))
    if cut is None:
        raise DatasetError(f"{where}: image {img_path} {size_problem(size)}")
    return size, cut


def read_sample(split_dir: Path, entry: str, where: str, labelled: bool) -> LaneSample:
    """One sample; its label is parsed here (so a bad label fails before training) and read
    again when the sample is loaded."""
    img_path = split_dir / entry
    label_path = None
    if labelled:
        label_path = curvelanes_label_path(split_dir, entry)
        if not label_path.is_file():
            raise DatasetError(f"{where}: label file {label_path} is missing")
        load_lanes(str(label_path))
    ori_size, cut = image_crop(img_path, where)
    return LaneSample(
        img_name=entry,
        img_path=str(img_path),
        source=where,
        label_path=None if label_path is None else str(label_path),
        label_reader=None if label_path is None else load_lanes,
        ori_size=ori_size,
        cut_height=cut,
    )


def read_curvelanes_split(root: str | Path, split: str) -> list[LaneSample]:
    """All samples of a CurveLanes split (train, valid / val, test) under ``root``."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(
            f"CurveLanes root {root} does not exist: expected {expected_layout()} "
            f"({DOWNLOAD_HINT}) and set dataset.root"
        )
    split_dir = root / split_folder(split)
    entries = read_list(split_dir)
    if not entries:
        raise DatasetError(f"CurveLanes list of split {split!r} in {split_dir} is empty")
    labelled = split_dir.name != "test" or (split_dir / "labels").is_dir()
    return [read_sample(split_dir, entry, where, labelled) for entry, where in entries]
