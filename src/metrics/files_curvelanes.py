"""CurveLanes labels, and scoring CurveLanes prediction files on disk (scripts/evaluate.py
curvelanes).

Layout of a split: ``<root>/<split>/<split>.txt`` lists ``images/<md5>.jpg`` (one per line);
labels are ``<root>/<split>/labels/<md5>.lines.json`` holding ``{"Lines": [[{"x": "2079.41",
"y": "1439.0"}, ...], ...]}``: coordinates are strings (numbers are read too), lanes and points
in file order (CondLaneNet does not sort them). Labels do not carry the image size, and the
metric scales every image by its own size, so each image's size is read from its header.

Predictions: ``<pred>/images/<md5>.lines.txt`` (the list entry, ``.jpg`` -> ``.lines.txt``), one
lane per line, ``x y x y ...`` in pixels of the original image (the CULane format; CondLaneNet
scores in memory and writes no files). A missing prediction file counts as an image without
predicted lanes and is reported; a bad file raises FileFormatError naming ``file:line``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.metrics.culane import mean_f1
from src.metrics.curvelanes import (
    CURVELANES_IOU,
    CURVELANES_LANE_WIDTH,
    curvelanes_image_counts,
    curvelanes_summary,
)
from src.metrics.files import (
    CULaneFileScore,
    FileFormatError,
    is_json_number,
    read_culane_lanes,
    text_lines,
)
from src.metrics.json_labels import label_error, load_json_label
from src.metrics.writers import culane_label_name

CURVELANES_DOWNLOAD_HINT = (
    "download CurveLanes from https://github.com/SoulmateB/CurveLanes (the test labels are "
    "not public: papers report the valid split)"
)


def _coordinate(value: object) -> float | None:
    """A coordinate written as a string (the dataset's way) or a number; None if neither."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    elif is_json_number(value):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


def parse_curvelanes_label(doc: object, text: str, path: str | os.PathLike) -> list[np.ndarray]:
    """The lanes of a parsed label as float64 (N, 2) (x, y) arrays in file order; lanes
    without points are left out (the metric ignores them). FileFormatError (``file:line``)
    for anything else than ``{"Lines": [[{"x": .., "y": ..}, ...], ...]}`` with finite
    coordinates."""
    if not isinstance(doc, dict) or not isinstance(doc.get("Lines"), list):
        raise label_error(path, text, (), 'expected {"Lines": [[{"x": "..", "y": ".."}, ...]]}')
    lanes = []
    for i, lane in enumerate(doc["Lines"]):
        if not isinstance(lane, list):
            raise label_error(path, text, ("Lines", i), "expected a list of points")
        points = []
        for j, point in enumerate(lane):
            if not isinstance(point, dict) or "x" not in point or "y" not in point:
                raise label_error(
                    path, text, ("Lines", i, j), 'expected a point {"x": "..", "y": ".."}'
                )
            xy = [_coordinate(point[axis]) for axis in "xy"]
            for axis, value in zip("xy", xy, strict=True):
                if value is None:
                    raise label_error(
                        path,
                        text,
                        ("Lines", i, j, axis),
                        f"expected a finite number (as a string), got {point[axis]!r}",
                    )
            points.append(xy)
        if points:
            lanes.append(np.array(points, dtype=np.float64))
    return lanes


def read_curvelanes_label(path: str | os.PathLike) -> list[np.ndarray]:
    """``parse_curvelanes_label`` of a file (OSError when it cannot be read)."""
    doc, text = load_json_label(path, Path(path).read_bytes())
    return parse_curvelanes_label(doc, text, path)


def curvelanes_label_path(split_dir: str | os.PathLike, entry: str) -> Path:
    """``images/<md5>.jpg`` -> ``<split_dir>/labels/<md5>.lines.json``."""
    stem = Path(entry).name.rpartition(".")[0] or Path(entry).name
    return Path(split_dir) / "labels" / f"{stem}.lines.json"


def read_curvelanes_list(list_path: str | os.PathLike) -> list[tuple[str, str]]:
    """(entry without a leading "/", ``file:line``) per non-blank line of a list file."""
    entries = []
    for line_no, line in enumerate(text_lines(list_path), start=1):
        fields = line.split()
        if fields:
            entries.append((fields[0].lstrip("/"), f"{list_path}:{line_no}"))
    return entries


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image from its header (nothing is decoded). OSError when the file
    is missing or not an image."""
    from PIL import Image, UnidentifiedImageError  # only where image sizes are needed

    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError as err:
        raise OSError(f"cannot read the size of image {path}: not an image ({err})") from None
    return height, width


def score_curvelanes_files(
    pred_dir: str | os.PathLike,
    gt_root: str | os.PathLike,
    split: str = "valid",
    iou_thresholds: Sequence[float] = (CURVELANES_IOU,),
    width: int = CURVELANES_LANE_WIDTH,
) -> CULaneFileScore:
    """Score the predictions of every image listed in ``<gt_root>/<split>/<split>.txt``;
    ``result`` has the structure of ``CurveLanesMetric.compute()``."""
    split_dir = Path(gt_root) / split
    list_path = split_dir / f"{split}.txt"
    if not list_path.is_file():
        raise FileNotFoundError(
            f"CurveLanes list {list_path} does not exist: expected <root>/{split}/{split}.txt, "
            f"<root>/{split}/images/ and <root>/{split}/labels/ ({CURVELANES_DOWNLOAD_HINT})"
        )
    counts = np.zeros((len(iou_thresholds), 3), dtype=np.int64)
    missing = []
    entries = read_curvelanes_list(list_path)
    for entry, where in entries:
        label_path = curvelanes_label_path(split_dir, entry)
        if not label_path.is_file():
            raise FileNotFoundError(f"{where}: label file {label_path} does not exist")
        gts = read_curvelanes_label(label_path)
        try:
            size = image_size(split_dir / entry)
        except OSError as err:
            raise OSError(f"{where}: {err} (the metric scales by each image's size)") from None
        name = culane_label_name(entry)
        pred_path = Path(pred_dir) / name
        if pred_path.is_file():
            preds = read_culane_lanes(pred_path)
        else:
            missing.append(name)
            preds = []
        try:
            counts += curvelanes_image_counts(preds, gts, size, iou_thresholds, width)
        except ValueError as err:
            raise FileFormatError(f"{pred_path} (GT {label_path}): cannot score: {err}") from None
    result: dict = curvelanes_summary(counts, iou_thresholds)
    if len(iou_thresholds) > 1:
        result["mF1"] = mean_f1(result)
    return CULaneFileScore(result, len(entries), missing)
