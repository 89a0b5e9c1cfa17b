"""CLRNet training targets for one image: the lane rows (``gt_lane``) and a segmentation mask
(``seg``), as the reference's GenerateLaneLine builds them after augmentation.

The data pipeline calls ``lane_targets`` with lanes in input-image pixels (e.g. 800x320).
Reproduced from the reference, quirks included:

- lanes are first clipped the way imgaug's ``LineString.clip_out_of_image`` does it
  (``clip_like_imgaug``): float32 points, inside means 0 <= x < W and 0 <= y < H, cuts on the
  border of [0, W - 1e-3] x [0, H - 1e-3]; a lane that leaves and re-enters becomes two lanes;
- lanes with fewer than 2 points are dropped (the slots close up); points are sorted bottom ->
  top and repeated ys dropped (first kept); the first ``max_lanes`` fill the slots;
- a lane whose span holds no sample row, or with fewer than 2 samples inside the image, leaves
  its slot invalid: ``[1, 0, -1e5, ...]``;
- samples at rows ``arange(H, -1, -H / (P - 1))``: a straight line through the two lowest points
  below the lane, a spline (k = min(3, n - 1)) inside; samples outside [0, W) come first in the
  row (bottom extrapolation mostly), then the inside ones;
- start_y = outside samples / (P - 1), start_x = first inside x in pixels, theta = mean of
  ``atan(i * strip / (x_i - x_0 + 1e-5)) / pi`` folded into (0, 1) over the inside samples,
  length = inside samples.

The mask (the reference reads CULane's mask files; this draws one for any dataset): zeros
(H, W) uint8, the k-th input lane (k < max_lanes) drawn with value k + 1 by ``cv2.line`` of
thickness 8 between consecutive points truncated to int32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import cv2
import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

INVALID_LANE_VALUE = -1e5
SEG_LINE_THICKNESS = 8
# imgaug pulls the right and bottom borders in by this much before cutting.
CLIP_EPS = 1e-3
# Intersection points closer than this to a neighbouring kept point are dropped (imgaug).
CLIP_DUPLICATE_DIST = 1e-2


def _segment_crossings(a: np.ndarray, b: np.ndarray, right: float, bottom: float) -> list:
    """Where segment a -> b meets the border of [0, right] x [0, bottom]: points (x, y), sorted
    by float32 distance from ``a``, without exact duplicates (a corner is one point). A segment
    running along an edge contributes the ends of the shared part."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    d = b64 - a64
    found: list[tuple[float, float]] = []
    for axis, value, lo, hi in ((1, 0.0, 0.0, right), (0, right, 0.0, bottom),
                                (1, bottom, 0.0, right), (0, 0.0, 0.0, bottom)):  # fmt: skip
        other = 1 - axis
        if d[axis] == 0:
            if a64[axis] != value:
                continue
            # Along the edge: the part of [a, b] inside [lo, hi] on the other axis.
            ends = sorted((a64[other], b64[other]))
            first, last = max(ends[0], lo), min(ends[1], hi)
            for coord in {first, last} if first <= last else ():
                point = [0.0, 0.0]
                point[axis], point[other] = value, coord
                found.append((point[0], point[1]))
            continue
        # Exact rational arithmetic, rounded once: GEOS (shapely) computes intersections in
        # double-double precision, and a float64 formula is off by an ulp now and then.
        t = (Fraction(value) - Fraction(a64[axis])) / Fraction(d[axis])
        if 0 <= t <= 1:
            coord = float(Fraction(a64[other]) + t * Fraction(d[other]))
            if lo <= coord <= hi:
                point = [0.0, 0.0]
                point[axis], point[other] = value, coord
                found.append((point[0], point[1]))
    unique = list(dict.fromkeys(found))
    return sorted(unique, key=lambda p: float(np.linalg.norm(np.float32(p) - a)))


def _near(p: np.ndarray, q: np.ndarray) -> bool:
    return float(np.linalg.norm(np.float32(p) - np.float32(q))) <= CLIP_DUPLICATE_DIST


def clip_like_imgaug(points: np.ndarray, width: int, height: int) -> list[np.ndarray]:
    """Pieces (float32 (N, 2)) of a polyline inside a ``width`` x ``height`` image, cut as
    imgaug 0.4's ``LineString.clip_out_of_image`` cuts them (see the module docstring)."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if len(points) == 0 or (len(points) == 1 and not inside[0]):
        return []
    if inside.all():
        return [points]
    # imgaug stores the border lines as float32 LineStrings too.
    right, bottom = float(np.float32(width - CLIP_EPS)), float(np.float32(height - CLIP_EPS))
    # A segment between two points inside [0, right] x [0, bottom] meets the border at most at
    # its ends, which the duplicate test below drops again: only the others are intersected.
    in_box = inside & (x <= right) & (y <= bottom)
    crossing_free = in_box[:-1] & in_box[1:]
    # (point, is a crossing, is outside), in order along the line.
    stream: list[tuple[np.ndarray, bool, bool]] = []
    for i in range(len(points) - 1):
        stream.append((points[i], False, not inside[i]))
        if crossing_free[i]:
            continue
        for crossing in _segment_crossings(points[i], points[i + 1], right, bottom):
            stream.append((np.asarray(crossing), True, False))
    if inside[-1]:
        stream.append((points[-1], False, False))
    pieces, piece = [], []
    for i, (point, is_crossing, outside) in enumerate(stream):
        if outside:
            if piece:
                pieces.append(piece)
                piece = []
            continue
        if is_crossing:
            following = stream[i + 1] if i + 1 < len(stream) else None
            if piece and _near(point, piece[-1]):
                continue
            if following is not None and not following[2] and _near(point, following[0]):
                continue
        piece.append(point)
    if piece:
        pieces.append(piece)
    return [np.asarray(p, dtype=np.float32) for p in pieces]


def _sorted_unique(lane: np.ndarray, img_w: int, img_h: int) -> np.ndarray:
    """Points bottom -> top (stable), repeated y dropped (first kept), rescaled by img / img
    in float32 like the reference (not always the identity in float32)."""
    order = sorted(range(len(lane)), key=lambda i: -lane[i, 1])
    seen: set[float] = set()
    kept = []
    for i in order:
        if float(lane[i, 1]) not in seen:
            seen.add(float(lane[i, 1]))
            kept.append(lane[i])
    points = np.asarray(kept, dtype=np.float32)
    points[:, 0] = points[:, 0] * np.float32(img_w) / np.float32(img_w)
    points[:, 1] = points[:, 1] * np.float32(img_h) / np.float32(img_h)
    return points


def _sample(points: np.ndarray, sample_ys: np.ndarray, img_w: int) -> tuple | None:
    """(xs outside [0, img_w), xs inside) at ``sample_ys`` below and within the lane's span;
    None when no sample row falls within the span."""
    xs, ys = points[:, 0], points[:, 1]
    spline = InterpolatedUnivariateSpline(ys[::-1], xs[::-1], k=min(3, len(points) - 1))
    within = sample_ys[(sample_ys >= ys.min()) & (sample_ys <= ys.max())]
    if len(within) == 0:
        return None
    line = np.polyfit(ys[:2], xs[:2], deg=1)
    all_xs = np.hstack((np.polyval(line, sample_ys[sample_ys > ys.max()]), spline(within)))
    inside = (all_xs >= 0) & (all_xs < img_w)
    return all_xs[~inside], all_xs[inside]


def _lane_row(outside: np.ndarray, inside: np.ndarray, n_strips: int, strip: float) -> list:
    """[0, 1, start_y, start_x, theta, length, xs...] for a sampled lane."""
    steps = np.arange(1, len(inside))
    thetas = [math.atan(i * strip / (inside[i] - inside[0] + 1e-5)) / math.pi for i in steps]
    thetas = [t if t > 0 else 1 - abs(t) for t in thetas]
    theta = sum(thetas) / len(thetas)
    head = [0.0, 1.0, len(outside) / n_strips, inside[0], theta, len(inside)]
    return head + list(np.hstack((outside, inside)))


def draw_seg_mask(
    lanes: Sequence[np.ndarray], img_w: int, img_h: int, max_lanes: int
) -> np.ndarray:
    """(img_h, img_w) uint8: the first ``max_lanes`` lanes drawn with values 1, 2, ...

    One ``cv2.polylines`` per lane: the same pixels as ``cv2.line`` between consecutive points
    (checked on 500 random polylines), in a fraction of the time.
    """
    mask = np.zeros((img_h, img_w), dtype=np.uint8)
    for k, lane in enumerate(lanes[:max_lanes]):
        points = np.asarray(lane, dtype=np.float64).reshape(-1, 2).astype(np.int32)
        if len(points) > 1:
            cv2.polylines(mask, [points.reshape(-1, 1, 2)], False, k + 1, SEG_LINE_THICKNESS)
    return mask


def lane_targets(
    lanes: Sequence[Sequence[Sequence[float]]],
    img_w: int = 800,
    img_h: int = 320,
    num_points: int = 72,
    max_lanes: int = 4,
) -> dict[str, np.ndarray]:
    """Targets for one image, keyed by the model's training-forward arguments.

    Args:
        lanes: lanes as sequences of (x, y) points in input-image pixels, in any order.

    Returns:
        ``gt_lane``: float32 (max_lanes, 6 + num_points), rows as described in the module
        docstring (xs in pixels, -1e5 where there is none); ``seg``: uint8 (img_h, img_w).
    """
    n_strips = num_points - 1
    strip = img_h / n_strips
    sample_ys = np.arange(img_h, -1, -strip)
    pieces = [p for lane in lanes for p in clip_like_imgaug(np.asarray(lane), img_w, img_h)]
    kept = [_sorted_unique(p, img_w, img_h) for p in pieces if len(p) > 1]

    gt_lane = np.full((max_lanes, 6 + num_points), INVALID_LANE_VALUE, dtype=np.float32)
    gt_lane[:, 0], gt_lane[:, 1] = 1, 0
    for index, points in enumerate(kept[:max_lanes]):
        sampled = _sample(points, sample_ys, img_w)
        if sampled is None or len(sampled[1]) <= 1:
            continue
        row = _lane_row(*sampled, n_strips, strip)
        gt_lane[index, : len(row)] = row
    return {"gt_lane": gt_lane, "seg": draw_seg_mask(lanes, img_w, img_h, max_lanes)}
