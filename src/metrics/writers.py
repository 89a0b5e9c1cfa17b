"""Prediction writers for the official formats, behaving as SRLane's reference writers.

* TuSimple: one JSON object per line, ``{"raw_file", "lanes", "run_time"}``; each lane has one
  integer x per h_sample: ``int(lane.x_at(y / ori_h) * ori_w)`` (truncated), -2 where the lane's
  x is negative (outside its y range ``x_at`` gives -2). x >= ori_w is kept, as the reference
  does.
* CULane: ``<root>/<image path minus .jpg>.lines.txt`` with one lane per line,
  ``x y x y ...`` with 5 decimals, bottom -> top, sampled on the rows ``cut_height, cut_height +
  step, ...`` below ``ori_h`` where 0 <= x < 1 (normalised); lanes without such a row are left
  out; an image without lanes gives an empty file.

* LLAMAS (CLRNet's LLAMAS writer): ``<root>/<recording>/<name>.lines.txt`` in the CULane
  format, rows 300..716 sampled at ``y / (ori_h - 1)`` and x scaled by ``ori_w - 1`` (not
  ``ori_w`` as for CULane: the published LLAMAS results come from this writer), bottom -> top.
* CurveLanes: ``<root>/images/<md5>.lines.txt`` in original-image pixels, written as for
  CULane with each image's own size and cut height; lanes with fewer than 2 points are left
  out (CondLaneNet keeps lanes with more than one point).

``culane_lane_points`` (and the LLAMAS / CurveLanes variants) return the coordinates exactly as
they will read back from the file (each value is rounded through its 5-decimal text), so a
metric fed with them in the loop gives the same result as scoring the written files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from src.lane import Lane

TUSIMPLE_NO_POINT = -2


def tusimple_lane_xs(
    lanes: Sequence[Lane], h_samples: Sequence[int], ori_w: int, ori_h: int
) -> list[list[int]]:
    """Each lane as integer x per h_sample (-2 = no point), as the reference ``pred2lanes``."""
    ys = np.asarray(h_samples, dtype=np.float64) / ori_h
    out = []
    for lane in lanes:
        xs = lane.x_at(ys)
        row = (xs * ori_w).astype(int)
        row[xs < 0] = TUSIMPLE_NO_POINT
        out.append(row.tolist())
    return out


def tusimple_record(raw_file: str, lanes: Sequence[Sequence[int]], run_time: float) -> str:
    """One prediction line (``run_time`` in ms), serialised as the reference does."""
    lanes = [[int(x) for x in lane] for lane in lanes]
    return json.dumps({"raw_file": raw_file, "lanes": lanes, "run_time": float(run_time)})


def write_tusimple_predictions(path: str | os.PathLike, records: Iterable[Mapping]) -> Path:
    """Write a TuSimple prediction file: one line per record ``{"raw_file", "lanes",
    "run_time"}`` (run time in ms), in the given order. Returns the path."""
    lines = [tusimple_record(r["raw_file"], r["lanes"], r["run_time"]) for r in records]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))  # no trailing newline, like the reference
    return path


def _five_decimals(values: np.ndarray) -> list[str]:
    return [f"{v:.5f}" for v in values.tolist()]


def culane_lane_points(
    lanes: Sequence[Lane], ori_w: int, ori_h: int, cut_height: int, step: int = 8
) -> list[np.ndarray]:
    """Each lane as (N, 2) float64 (x, y) pixels, bottom -> top, as written to ``.lines.txt``.

    Rows ``arange(cut_height, ori_h, step)``; points with 0 <= x < 1 (normalised) are kept;
    lanes without points are dropped; values are those the 5-decimal text reads back as.
    """
    ys = np.arange(cut_height, ori_h, step) / ori_h
    out = []
    for lane in lanes:
        xs = lane.x_at(ys)
        valid = (xs >= 0) & (xs < 1)
        if not valid.any():
            continue
        px = (xs[valid] * ori_w)[::-1]
        py = (ys[valid] * ori_h)[::-1]
        xs_read = [float(v) for v in _five_decimals(px)]
        ys_read = [float(v) for v in _five_decimals(py)]
        out.append(np.array([xs_read, ys_read], dtype=np.float64).T.copy())
    return out


def culane_lines_text(points: Sequence[np.ndarray]) -> str:
    """The ``.lines.txt`` content for an image's lanes: one line per lane, no trailing newline."""
    rows = []
    for lane in points:
        lane = np.asarray(lane, dtype=np.float64).reshape(-1, 2)
        if len(lane) == 0:
            continue
        xs, ys = _five_decimals(lane[:, 0]), _five_decimals(lane[:, 1])
        rows.append(" ".join(f"{x} {y}" for x, y in zip(xs, ys, strict=True)))
    return "\n".join(rows)


def culane_label_name(img_name: str) -> str:
    """The label/prediction file of an image path: leading "/" dropped, ``.jpg`` (or the last
    extension, as the C++ tool does for other names) replaced by ``.lines.txt``."""
    name = img_name.strip().lstrip("/")
    if name.endswith(".jpg"):
        return name[: -len(".jpg")] + ".lines.txt"
    stem, dot, extension = name.rpartition(".")
    return (stem if dot and "/" not in extension else name) + ".lines.txt"


def write_culane_prediction(
    out_root: str | os.PathLike, img_name: str, points: Sequence[np.ndarray]
) -> Path:
    """Write ``<out_root>/<img_name minus .jpg>.lines.txt`` (directories created). Returns it."""
    path = Path(out_root) / culane_label_name(img_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(culane_lines_text(points))
    return path


LLAMAS_FIRST_ROW = 300
LLAMAS_SIZE = (1276, 717)  # (width, height)
_LLAMAS_IMAGE_SUFFIX = "_color_rect.png"


def _read_back(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """(x, y) points as the 5-decimal text reads back."""
    xs = [float(v) for v in _five_decimals(px)]
    ys = [float(v) for v in _five_decimals(py)]
    return np.array([xs, ys], dtype=np.float64).T.copy()


def llamas_lane_points(
    lanes: Sequence[Lane],
    ori_w: int = LLAMAS_SIZE[0],
    ori_h: int = LLAMAS_SIZE[1],
    first_row: int = LLAMAS_FIRST_ROW,
) -> list[np.ndarray]:
    """Each lane as (N, 2) float64 (x, y) pixels, bottom -> top, as written to a LLAMAS
    ``.lines.txt``: rows ``first_row .. ori_h - 1`` where 0 <= x < 1 (normalised); lanes without
    such a row are dropped."""
    ys = np.arange(first_row, ori_h) / (ori_h - 1)
    out = []
    for lane in lanes:
        xs = lane.x_at(ys)
        valid = (xs >= 0) & (xs < 1)
        if valid.any():
            px = (xs * (ori_w - 1))[valid][::-1]
            py = (ys[valid] * (ori_h - 1))[::-1]
            out.append(_read_back(px, py))
    return out


def llamas_prediction_file(img_name: str) -> str:
    """``color_images/valid/<recording>/<name>_color_rect.png`` -> ``<recording>/<name>.lines
    .txt`` (the last two path parts, as the official evaluator looks them up)."""
    tail = "/".join(img_name.strip().split("/")[-2:])
    if tail.endswith(_LLAMAS_IMAGE_SUFFIX):
        return tail.removesuffix(_LLAMAS_IMAGE_SUFFIX) + ".lines.txt"
    return culane_label_name(tail)


def write_llamas_prediction(
    out_root: str | os.PathLike, img_name: str, points: Sequence[np.ndarray]
) -> Path:
    """Write ``<out_root>/<recording>/<name>.lines.txt`` (directories created). Returns it."""
    path = Path(out_root) / llamas_prediction_file(img_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(culane_lines_text(points))
    return path


def curvelanes_lane_points(
    lanes: Sequence[Lane], ori_w: int, ori_h: int, cut_height: int, step: int = 8
) -> list[np.ndarray]:
    """``culane_lane_points`` with the image's own size and cut height, lanes with fewer than
    2 points left out (the CurveLanes prediction files hold these)."""
    points = culane_lane_points(lanes, ori_w, ori_h, cut_height, step)
    return [lane for lane in points if len(lane) >= 2]


def write_curvelanes_prediction(
    out_root: str | os.PathLike, img_name: str, points: Sequence[np.ndarray]
) -> Path:
    """Write ``<out_root>/images/<md5>.lines.txt`` for the list entry ``img_name``
    (``images/<md5>.jpg``); lanes with fewer than 2 points are left out. Returns the path."""
    return write_culane_prediction(out_root, img_name, [p for p in points if len(p) >= 2])
