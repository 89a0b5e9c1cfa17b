"""TuSimple reader: JSON Lines label files -> LaneSample records.

Each label line is ``{"lanes": [[x, ...], ...], "h_samples": [y, ...], "raw_file": "clips/..."}``;
a negative x means "no lane point at this row" and every lane has len(h_samples) entries. The
h_samples are read per line (test labels and the synthetic dataset may use other rows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.metrics.files import is_json_number

from .errors import DatasetError, absent, numbered_lines
from .lane_checks import check_points_near_image, check_rows_increase, warn_repeated_images
from .samples import LaneSample

TRAIN_FILES = ("label_data_0313.json", "label_data_0601.json")
VAL_FILES = ("label_data_0531.json",)
TEST_FILES = ("test_label.json",)
SPLIT_FILES: dict[str, tuple[str, ...]] = {
    "train": TRAIN_FILES,
    "val": VAL_FILES,
    "trainval": TRAIN_FILES + VAL_FILES,
    "test": TEST_FILES,
}
ALL_LABEL_FILES = TRAIN_FILES + VAL_FILES + TEST_FILES
# (width, height) of every TuSimple image (conf/dataset/tusimple.yaml: ori_w, ori_h).
IMAGE_SIZE = (1280, 720)
DOWNLOAD_HINT = (
    "download the TuSimple lane benchmark (github.com/TuSimple/tusimple-benchmark, train_set "
    "and test_set with test_label.json) and set dataset.root"
)


def expected_layout() -> str:
    """What a TuSimple root should contain, for error messages."""
    return ", ".join(ALL_LABEL_FILES) + " and clips/"


def empty_label_file_error(label_path: Path) -> DatasetError:
    """The error for a label file without samples (the split would silently shrink)."""
    return DatasetError(
        f"{label_path}: label file is empty: expected one JSON object per line "
        '({"lanes": ..., "h_samples": ..., "raw_file": ...})'
    )


def parse_tusimple_line(
    text: str, where: str, image_size: tuple[int, int] | None = None
) -> tuple[str, list[int], list[list[int]]]:
    """Parse and validate one label line.

    Args:
        text: the line's text (one JSON object).
        where: ``file:line`` prefix for error messages.
        image_size: (width, height) of the dataset's images; points far outside them are
            refused (``lane_checks``). None: no such check.

    Returns:
        (raw_file, h_samples, lanes) exactly as in the line.

    Raises:
        DatasetError: invalid JSON, a missing or mistyped field, a lane whose length differs
            from h_samples (lanes are numbered from 0, as in the JSON list), h_samples that do
            not increase strictly, a point far outside the image.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in ("lanes", "h_samples", "raw_file") if key not in data]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}")
    raw_file, h_samples, lanes = data["raw_file"], data["h_samples"], data["lanes"]
    if not isinstance(raw_file, str) or not raw_file.strip("/"):
        raise DatasetError(f"{where}: raw_file must be a non-empty path string, got {raw_file!r}")
    if not isinstance(h_samples, list) or not all(is_json_number(y) for y in h_samples):
        raise DatasetError(f"{where}: h_samples must be a list of numbers")
    if not isinstance(lanes, list):
        raise DatasetError(f"{where}: lanes must be a list of lists of numbers")
    for index, lane in enumerate(lanes):
        if not isinstance(lane, list) or not all(is_json_number(x) for x in lane):
            raise DatasetError(f"{where}: lane {index} must be a list of numbers")
        if len(lane) != len(h_samples):
            raise DatasetError(
                f"{where}: lane {index} has {len(lane)} values but h_samples has {len(h_samples)}"
            )
    check_rows_increase(h_samples, where)
    if image_size is not None:
        check_points_near_image(h_samples, lanes, image_size, where)
    return raw_file, h_samples, lanes


def tusimple_lanes(h_samples: Sequence[float], xs: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Lane points (x, y) in pixels from a label line: negative x dropped, empty lanes dropped."""
    ys = np.asarray(h_samples, dtype=np.float64)
    lanes = []
    for lane_xs in xs:
        x = np.asarray(lane_xs, dtype=np.float64)
        keep = x >= 0
        if keep.any():
            lanes.append(np.stack((x[keep], ys[keep]), axis=1))
    return lanes


def read_tusimple_label_file(
    root: Path, label_path: Path, image_size: tuple[int, int] | None = None
) -> list[LaneSample]:
    """All samples of one label file (blank lines are skipped); errors name ``file:line``; a
    file without samples is an error. ``image_size``: see ``parse_tusimple_line``."""
    samples = []
    for text, where in numbered_lines(label_path):
        raw_file, h_samples, xs = parse_tusimple_line(text, where, image_size)
        img_name = raw_file.lstrip("/")
        lanes = tuple(tusimple_lanes(h_samples, xs))
        samples.append(
            LaneSample(
                img_name=img_name,
                img_path=str(root / img_name),
                lanes=lanes,
                train_lanes=lanes,
                source=where,
                h_samples=tuple(int(y) if float(y).is_integer() else y for y in h_samples),
                gt_xs=tuple(tuple(lane) for lane in xs),
            )
        )
    if not samples:
        raise empty_label_file_error(label_path)
    return samples


def tusimple_label_files(root: Path, split: str) -> list[Path]:
    """The label files of a split, checked to exist (DatasetError naming what is missing)."""
    if split not in SPLIT_FILES:
        raise DatasetError(
            f"unknown TuSimple split {split!r}: expected one of {', '.join(SPLIT_FILES)}"
        )
    if not root.is_dir():
        raise DatasetError(
            f"TuSimple root {root} {absent(root, 'directory')}: expected {expected_layout()} "
            f"({DOWNLOAD_HINT})"
        )
    paths = [root / name for name in SPLIT_FILES[split]]
    missing = [f"{path} ({absent(path)})" for path in paths if not path.is_file()]
    if missing:
        raise DatasetError(
            f"TuSimple label file(s) {', '.join(missing)} missing for split {split!r}: "
            f"a TuSimple root contains {expected_layout()} ({DOWNLOAD_HINT})"
        )
    return paths


def read_tusimple_split(
    root: str | Path, split: str, image_size: tuple[int, int] | None = None
) -> list[LaneSample]:
    """All samples of a TuSimple split (train, val, trainval, test) under ``root``; an image
    labelled twice is logged (``lane_checks.warn_repeated_images``). ``image_size`` (width,
    height): see ``parse_tusimple_line``."""
    root = Path(root).expanduser().absolute()
    samples: list[LaneSample] = []
    for path in tusimple_label_files(root, split):
        samples.extend(read_tusimple_label_file(root, path, image_size))
    warn_repeated_images(samples, f"TuSimple split {split!r} ({root})")
    return samples
