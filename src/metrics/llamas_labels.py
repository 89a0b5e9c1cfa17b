"""LLAMAS lanes from the marker labels, computed as the official tools compute them
(karstenBehrendt/unsupervised_llamas: ``label_file_scripts.read_json``,
``spline_creator.get_horizontal_values_for_four_lanes`` and the lane metric's ``add_ys``).

A label ``labels/<split>/<recording>/<name>.json`` holds ``projection_matrix`` and ``lanes``:
``[{"lane_id": "l0", "markers": [{"pixel_start": {"x", "y"}, "pixel_end": {...},
"world_start": {"x", "y", "z"}, "world_end": {...}}, ...]}, ...]``. Pixel values are cast with
``int()`` (truncated), world values with ``float()``. Then, as the official code does:

1. A lane whose markers' ``pixel_start.y`` span less than 20 px, or with fewer than 2 markers,
   is dropped; the survivors are renamed per side in sorted order of their ids (``l2`` becomes
   ``l1`` when ``l1`` was dropped). Two lanes with one name: the later one in the file is kept.
2. The marker with the smallest ``world_start.z`` among those whose pixel start and end differ
   in both x and y (the first such marker on ties) is extended in pixel space to row 716, or to
   x = 0 / 1276 where it leaves the image side first; the new point is rounded with Python's
   ``round()`` (half to even). Nothing is extended when that z is negative.
3. Rows: each marker adds its start x at its start row and, when more than 2 px tall,
   ``round(start_x + slope * i)`` at row ``start_y - i`` for i = 0 .. height (so the start row
   gets the start x twice); a row's value is the mean of what it got. Rows between the first
   and last filled row are filled one by one with ``x[y - 1] + (x[next] - x[y - 1]) /
   (next - y + 1)`` (the official recurrence, kept for its rounding); other rows are -1. A
   negative row indexes from the end (row -5 is row 712), as the official Python list does.
4. The benchmark lanes are l1, l0, r0, r1 (in that order); one counts when at least 2 of its
   717 rows have x >= 0, and its ground truth is the points (x, y) of rows 300..716 with
   x >= 0, drawn as they are (no spline) by the lane metric.

Where the official code crashes, this module decides:

* a lane with at least 2 rows but fewer than 2 points in rows 300..716 (the official
  ``assert len(xs) > 1``; it happens when the extension leaves the image side above row 300):
  the lane is left out of the ground truth and named in ``LlamasLanes.dropped_above``;
* a lane without markers (``min()`` of nothing): dropped, as lanes with fewer than 2 markers;
* no marker of a lane with distinct start and end x and y (``min()`` of nothing): the lane is
  not extended; a closest marker whose world start and end have the same z (a division by
  zero in a world-space value nothing else uses): extended like any other;
* a row outside -717 .. 716 (an ``IndexError`` that opens the debugger): FileFormatError
  naming the file, line and marker;
* a lane id that does not start with "l" or "r" (a ``KeyError``), a missing or non-numeric
  field: FileFormatError naming the file, line and field.

Only the four benchmark lanes are computed: a problem in a marker of another lane that the
official code would also trip over goes unnoticed here. Training lanes (``train_lanes``) are
those CLRNet's LLAMAS reader builds: every row 0..716 with x >= 0, lanes with more than 2
points, points top -> bottom, lanes sorted by the x of their top point.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src.metrics.files import FileFormatError, is_json_number
from src.metrics.json_labels import JsonPath, label_error, load_json_label

IMAGE_WIDTH = 1276
IMAGE_HEIGHT = 717
BOTTOM_ROW = IMAGE_HEIGHT - 1
GT_FIRST_ROW = 300  # the lane metric keeps ground-truth rows 300..716
BENCHMARK_LANES = ("l1", "l0", "r0", "r1")
MIN_LANE_SPAN = 20  # px of pixel_start.y (read_json's min_lane_height)
MIN_MARKERS = 2
NO_X = -1.0
_FAR = 1 << 30  # pixel values beyond this are not coordinates


@dataclass(frozen=True, slots=True)
class Marker:
    """One marker: pixel start and end (x, y) after ``int()``, world start z, JSON path."""

    start: tuple[int, int]
    end: tuple[int, int]
    world_start_z: float
    where: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class LabelLane:
    lane_id: str
    markers: tuple[Marker, ...]


@dataclass(frozen=True)
class LlamasLanes:
    """One label's lanes. ``lanes``: the benchmark ground truth, float64 (N, 2) (x, y) arrays in
    l1, l0, r0, r1 order (absent lanes skipped); ``train_lanes``: CLRNet's training lanes;
    ``rows``: x per row (717 values, -1 = none) of each benchmark lane the label has;
    ``dropped_above``: lanes left out because fewer than 2 of their points lie in rows
    300..716 (the official evaluator asserts on them)."""

    lanes: tuple[np.ndarray, ...]
    train_lanes: tuple[np.ndarray, ...]
    rows: dict[str, np.ndarray]
    dropped_above: tuple[str, ...]


class _Label:
    """Validation of one parsed label; errors name ``file:line`` and the JSON path."""

    def __init__(self, path: str | os.PathLike, text: str) -> None:
        self.path, self.text = path, text

    def error(self, keys: JsonPath, message: str) -> FileFormatError:
        return label_error(self.path, self.text, keys, message)

    def field(self, parent: Any, keys: tuple, key: str, kind: type, what: str) -> Any:
        if not isinstance(parent, dict) or key not in parent:
            raise self.error(keys, f"missing '{key}': expected {what}")
        value = parent[key]
        if not isinstance(value, kind):
            raise self.error(keys + (key,), f"expected {what}, got {type(value).__name__}")
        return value

    def number(self, point: dict, keys: tuple, axis: str) -> float | int:
        value = self.field(point, keys, axis, object, "a number")
        if not is_json_number(value):
            raise self.error(keys + (axis,), f"expected a number, got {value!r}")
        return value

    def pixel(self, marker: dict, keys: tuple, key: str) -> tuple[int, int]:
        point = self.field(marker, keys, key, dict, "an object {x, y}")
        values = []
        for axis in "xy":
            value = int(self.number(point, keys + (key,), axis))
            if abs(value) > _FAR:
                raise self.error(keys + (key, axis), f"pixel coordinate {value} is out of range")
            values.append(value)
        return values[0], values[1]

    def marker(self, marker: object, keys: tuple) -> Marker:
        try:
            return _plain_marker(marker, keys)
        except (KeyError, TypeError, ValueError, OverflowError):
            return self.checked_marker(marker, keys)  # the same Marker, or the precise error

    def checked_marker(self, marker: object, keys: tuple) -> Marker:
        if not isinstance(marker, dict):
            raise self.error(keys, f"expected a marker object, got {type(marker).__name__}")
        start, end = self.pixel(marker, keys, "pixel_start"), self.pixel(marker, keys, "pixel_end")
        world = {}
        for key in ("world_start", "world_end"):
            point = self.field(marker, keys, key, dict, "an object {x, y, z}")
            world[key] = [float(self.number(point, keys + (key,), axis)) for axis in "xyz"]
        return Marker(start, end, world["world_start"][2], keys)

    def lanes(self, doc: object) -> list[LabelLane]:
        if not isinstance(doc, dict):
            raise self.error((), "expected a JSON object with 'lanes' and 'projection_matrix'")
        self.field(doc, (), "projection_matrix", object, "the camera's projection matrix")
        lanes = self.field(doc, (), "lanes", list, "a list of lanes")
        out = []
        for i, lane in enumerate(lanes):
            keys = ("lanes", i)
            lane_id = self.field(lane, keys, "lane_id", str, "a lane id such as 'l0' or 'r1'")
            if not lane_id.startswith(("l", "r")):
                raise self.error(keys + ("lane_id",), f"expected 'l<k>' or 'r<k>', got {lane_id!r}")
            markers = self.field(lane, keys, "markers", list, "a list of markers")
            parsed = [self.marker(m, keys + ("markers", j)) for j, m in enumerate(markers)]
            out.append(LabelLane(lane_id, tuple(parsed)))
        return out


_NUMBER_TYPES = {int, float}


def _plain_marker(marker: dict, keys: tuple) -> Marker:
    """The fast path of ``_Label.marker`` for a marker whose fields are all plain finite
    numbers; anything else raises and goes through the checked path."""
    start, end = marker["pixel_start"], marker["pixel_end"]
    world_start, world_end = marker["world_start"], marker["world_end"]
    pixels = (start["x"], start["y"], end["x"], end["y"])
    world = (world_start["x"], world_start["y"], world_start["z"])
    world += (world_end["x"], world_end["y"], world_end["z"])
    if not set(map(type, pixels + world)) <= _NUMBER_TYPES or not math.isfinite(sum(world)):
        raise TypeError
    sx, sy, ex, ey = map(int, pixels)  # nan / inf raise
    if max(abs(sx), abs(sy), abs(ex), abs(ey)) > _FAR:
        raise ValueError
    return Marker((sx, sy), (ex, ey), float(world[2]), keys)


def parse_llamas_label(doc: object, text: str, path: str | os.PathLike) -> list[LabelLane]:
    """The lanes of a parsed label, every field checked (FileFormatError: ``file:line``)."""
    return _Label(path, text).lanes(doc)


def named_lanes(lanes: list[LabelLane]) -> dict[str, LabelLane]:
    """Step 1: lanes filtered by span and marker count, renamed per side (later wins)."""
    kept = []
    for lane in lanes:
        if len(lane.markers) < MIN_MARKERS:  # also covers lanes without markers
            continue
        starts = [m.start[1] for m in lane.markers]
        if max(starts) - min(starts) >= MIN_LANE_SPAN:
            kept.append(lane)
    mapping, counters = {}, {"l": 0, "r": 0}
    for lane_id in sorted(lane.lane_id for lane in kept):
        side = lane_id[0]
        mapping[lane_id] = f"{side}{counters[side]}"
        counters[side] += 1
    return {mapping[lane.lane_id]: lane for lane in kept}


def _extension(markers: tuple[Marker, ...]) -> Marker | None:
    """Step 2: the marker that extends the closest one to the image bottom or side."""
    sloped = [m for m in markers if m.start[0] != m.end[0] and m.start[1] != m.end[1]]
    if not sloped:
        return None
    closest = min(sloped, key=lambda m: m.world_start_z)
    if closest.world_start_z < 0:
        return None
    (sx, sy), (ex, ey) = closest.start, closest.end
    x_per_row = (ex - sx) / (ey - sy)
    row_per_x = (ey - sy) / (ex - sx)
    bottom_x = sx + (BOTTOM_ROW - sy) * x_per_row
    if bottom_x < 0:
        new = (0, sy - sx * row_per_x)
    elif bottom_x > IMAGE_WIDTH:
        new = (IMAGE_WIDTH, sy + (IMAGE_WIDTH - sx) * row_per_x)
    else:
        new = (bottom_x, BOTTOM_ROW)
    return Marker((round(new[0]), round(new[1])), closest.start, 1.0, closest.where)


def _marker_points(markers: tuple[Marker, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, xs) the markers add (step 3), and each marker's lowest and highest row."""
    sx, sy, ex, ey = np.array([m.start + m.end for m in markers], dtype=np.int64).T
    height = sy - ey
    tall = height > 2
    steps = np.where(tall, height + 1, 0)
    owner = np.repeat(np.arange(len(markers)), steps)
    i = np.arange(owner.size) - np.repeat(np.cumsum(steps) - steps, steps)
    slope = (ex[tall] - sx[tall]) / height[tall]  # per marker, as the official division
    slopes = np.zeros(len(markers))
    slopes[tall] = slope
    xs = np.round(sx[owner] + slopes[owner] * i)  # numpy rounds half to even, as round()
    rows = np.concatenate([sy, sy[owner] - i])
    low = np.where(tall, ey, sy)
    return rows, np.concatenate([sx.astype(np.float64), xs]), np.stack([low, sy], axis=1)


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """Step 3's fill between the first and last set rows, with the official recurrence."""
    unset = values == NO_X
    set_rows = np.flatnonzero(~unset)
    if len(set_rows) < 2:
        return values
    out = values.tolist()
    gaps = np.flatnonzero(unset[set_rows[0] : set_rows[-1]]) + set_rows[0]
    next_set = set_rows[np.searchsorted(set_rows, gaps)]
    for row, nxt in zip(gaps.tolist(), next_set.tolist(), strict=True):
        out[row] = out[row - 1] + (out[nxt] - out[row - 1]) / (nxt - row + 1)
    return np.array(out, dtype=np.float64)


def lane_rows(lane: LabelLane, label: _Label) -> np.ndarray:
    """x per row (717 values, -1 = none) of one lane: steps 2 and 3."""
    extension = _extension(lane.markers)
    markers = lane.markers if extension is None else (extension,) + lane.markers
    rows, xs, spans = _marker_points(markers)
    outside = (spans[:, 0] < -IMAGE_HEIGHT) | (spans[:, 1] > BOTTOM_ROW)
    if outside.any():
        k = int(np.argmax(outside))
        what = "extended to" if markers[k] is extension else "covers"
        raise label.error(
            markers[k].where,
            f"this marker {what} rows {spans[k, 0]}..{spans[k, 1]}, outside the image's "
            f"rows 0..{BOTTOM_ROW} (the official spline_creator stops in the debugger)",
        )
    rows = np.where(rows < 0, rows + IMAGE_HEIGHT, rows)
    sums = np.bincount(rows, weights=xs, minlength=IMAGE_HEIGHT)
    counts = np.bincount(rows, minlength=IMAGE_HEIGHT)
    values = np.full(IMAGE_HEIGHT, NO_X)
    filled = counts > 0
    values[filled] = sums[filled] / counts[filled]
    return _fill_gaps(values)


def lane_points(rows: np.ndarray, first_row: int) -> np.ndarray:
    """(x, y) float64 points of the rows ``first_row``.. with x >= 0, top -> bottom."""
    ys = np.arange(first_row, IMAGE_HEIGHT, dtype=np.float64)
    xs = rows[first_row:]
    keep = xs >= 0
    return np.stack([xs[keep], ys[keep]], axis=1)


def llamas_lanes(doc: object, text: str, path: str | os.PathLike) -> LlamasLanes:
    """The lanes of a parsed label (see the module docstring)."""
    label = _Label(path, text)
    named = named_lanes(label.lanes(doc))
    rows = {name: lane_rows(named[name], label) for name in BENCHMARK_LANES if name in named}
    lanes, dropped, train = [], [], []
    for name, values in rows.items():
        if np.count_nonzero(values >= 0) > 1:
            points = lane_points(values, GT_FIRST_ROW)
            if len(points) > 1:
                lanes.append(points)
            else:
                dropped.append(name)
        points = lane_points(values, 0)
        if len(points) > 2:
            train.append(points)
    train.sort(key=lambda points: points[0, 0])
    return LlamasLanes(tuple(lanes), tuple(train), rows, tuple(dropped))


def read_llamas_label(path: str | os.PathLike) -> LlamasLanes:
    """``llamas_lanes`` of a label file; FileFormatError (``file:line``) for a bad file,
    OSError when it cannot be read."""
    doc, text = load_json_label(path, Path(path).read_bytes())
    return llamas_lanes(doc, text, path)
