"""SRLane training targets for one image: lane rows (gt_lane) and per-stride angle maps (gt_angle).

The data pipeline calls ``lane_targets`` after augmentation, with lanes in input-image pixels
(e.g. 800x320). Numbers follow the reference's GenerateLaneLine exactly, including its quirks:
the angle maps are drawn from every kept lane while gt_lane holds only the first ``max_lanes``
(a lane skipped for too few samples leaves an invalid row at its index), and start_y / length
are stored as counts of samples outside / inside the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

# The feature strides of SRLane's three levels (ResNet layer2-4): the angle-map targets are made
# at these strides, and the input size must be a multiple of the largest.
STRIDES = (8, 16, 32)

INVALID_LANE_VALUE = -1e5
HORIZONTAL_ANGLE_DEG = 5.0


@dataclass(frozen=True)
class _LaneCurve:
    """x as a function of y for one lane: spline inside the annotated y range, a straight line
    through the two lowest points below it, nothing above it."""

    spline: InterpolatedUnivariateSpline
    line: np.ndarray  # polyfit coefficients x = a*y + b
    min_y: float
    max_y: float

    def x_at(self, ys: np.ndarray) -> np.ndarray:
        """x at every row of ``ys``: the line below the lane, the spline elsewhere (callers drop
        the rows above the lane). Each row's value does not depend on the others, so one call
        serves every set of sample rows."""
        return np.where(ys > self.max_y, np.polyval(self.line, ys), self.spline(ys))


def _prepare_lanes(lanes: Sequence[Sequence[Sequence[float]]]) -> list[np.ndarray]:
    """Drop lanes with < 2 points, sort bottom -> top, drop repeated y (first kept), drop
    near-horizontal lanes (end-to-end angle <= 5 degrees, which also drops 1-point lanes)."""
    prepared = []
    for lane in lanes:
        if len(lane) < 2:
            continue
        points = np.asarray(lane, dtype=np.float64).reshape(-1, 2)
        points = points[np.argsort(-points[:, 1], kind="stable")]
        ys = points[:, 1]
        points = points[np.concatenate(([True], ys[1:] != ys[:-1]))]  # first of each y
        if len(points) < 2:
            continue
        (x_bottom, y_bottom), (x_top, y_top) = points[0].tolist(), points[-1].tolist()
        angle = math.degrees(math.atan(math.fabs((y_top - y_bottom) / (x_bottom - x_top + 1e-6))))
        if angle > HORIZONTAL_ANGLE_DEG:
            prepared.append(points)
    return prepared


def _lane_curve(points: np.ndarray) -> _LaneCurve:
    xs, ys = points[:, 0], points[:, 1]  # bottom -> top: ys strictly decreasing
    spline = InterpolatedUnivariateSpline(ys[::-1], xs[::-1], k=min(3, len(points) - 1))
    line = np.polyfit(ys[:2], xs[:2], deg=1)
    return _LaneCurve(spline=spline, line=line, min_y=float(ys.min()), max_y=float(ys.max()))


def _sampled(curve: _LaneCurve, xs: np.ndarray, ys: np.ndarray) -> np.ndarray | None:
    """The lane's x at the sample rows ``ys`` (bottom -> top) at or below its top, from ``xs``
    (``curve.x_at(ys)``); None when no row falls inside the lane (the reference skips it)."""
    if not ((ys >= curve.min_y) & (ys <= curve.max_y)).any():
        return None
    return xs[ys >= curve.min_y]


def _draw_angle_map(angle_map: np.ndarray, lanes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write the local lane angle between consecutive samples into the cells they fall in.

    ``lanes`` holds each lane's (xs, ys) in cell units, bottom -> top. theta = atan(1 / dx) / pi
    folded into (0, 1); 0.5 is a vertical lane. Cells use int() truncation like the reference,
    and a cell hit twice keeps the last write of the reference's loop (lane by lane, bottom ->
    top): the later lane, then the higher sample.
    """
    if not lanes:
        return
    x = np.concatenate([xs[1:] for xs, _ in lanes])
    y = np.concatenate([ys[1 : len(xs)] for xs, ys in lanes])
    dx = np.concatenate([xs[1:] - xs[:-1] for xs, _ in lanes])
    cell_x, cell_y = np.trunc(x).astype(np.int64), np.trunc(y).astype(np.int64)
    h, w = angle_map.shape
    inside = (cell_x >= 0) & (cell_x < w) & (cell_y >= 0) & (cell_y < h)
    theta = np.arctan(1.0 / (dx + 1e-6)) / np.pi
    theta = np.where(theta > 0, theta, 1.0 - np.abs(theta))
    flat = cell_y[inside] * w + cell_x[inside]
    _, last_from_end = np.unique(flat[::-1], return_index=True)
    last = len(flat) - 1 - last_from_end
    angle_map.reshape(-1)[flat[last]] = theta[inside][last]


def lane_targets(
    lanes: Sequence[Sequence[Sequence[float]]],
    img_w: int = 800,
    img_h: int = 320,
    num_points: int = 72,
    max_lanes: int = 4,
    strides: Sequence[int] = STRIDES,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Targets for one image.

    Args:
        lanes: lanes as sequences of (x, y) points in input-image pixels, in any order.

    Returns:
        gt_lane: float32 (max_lanes, 4 + num_points). A valid row is
            [0, 1, n_outside, n_inside, x_0 .. x_{num_points-1}] with x in pixels sampled
            bottom -> top (rows above the lane: -1e5); an invalid row is [1, 0, -1e5, ...].
        gt_angle: per stride a float32 (img_h // s, img_w // s) map; 0 means "no lane here".
    """
    curves = [_lane_curve(points) for points in _prepare_lanes(lanes)]
    # Every curve is evaluated once at all sample rows: the angle maps' rows (every stride
    # pixels from the bottom) and gt_lane's num_points rows.
    stride_ys = [np.arange(img_h, -1, -stride, dtype=np.float64) for stride in strides]
    lane_ys = np.arange(img_h, -1, -img_h / (num_points - 1), dtype=np.float64)
    all_ys = np.concatenate([*stride_ys, lane_ys])
    splits = np.cumsum([len(ys) for ys in stride_ys])
    curve_xs = [np.split(curve.x_at(all_ys), splits) for curve in curves]

    gt_angle = []
    for level, (stride, sample_ys) in enumerate(zip(strides, stride_ys, strict=True)):
        angle_map = np.zeros((img_h // stride, img_w // stride), dtype=np.float64)
        drawn = []
        for curve, xs_per_rows in zip(curves, curve_xs, strict=True):
            xs = _sampled(curve, xs_per_rows[level], sample_ys)
            if xs is not None:
                drawn.append((xs / stride, sample_ys / stride))
        _draw_angle_map(angle_map, drawn)
        gt_angle.append(angle_map.astype(np.float32))

    gt_lane = np.full((max_lanes, 4 + num_points), INVALID_LANE_VALUE, dtype=np.float32)
    gt_lane[:, 0] = 1
    gt_lane[:, 1] = 0
    for index, (curve, xs_per_rows) in enumerate(zip(curves[:max_lanes], curve_xs, strict=False)):
        xs = _sampled(curve, xs_per_rows[-1], lane_ys)
        if xs is None:
            continue
        inside = (xs >= 0) & (xs < img_w)
        n_inside = int(inside.sum())
        if n_inside <= 1:
            continue
        gt_lane[index, 0] = 0
        gt_lane[index, 1] = 1
        gt_lane[index, 2] = len(xs) - n_inside
        gt_lane[index, 3] = n_inside
        gt_lane[index, 4 : 4 + len(xs)] = xs
    return gt_lane, gt_angle
