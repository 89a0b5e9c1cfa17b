"""CurveLanes lane metric: one image's TP/FP/FN at IoU thresholds, as CondLaneNet's
``LaneMetricCore`` (``tools/condlanenet/lane_metric.py``, the same protocol as vega's and
UFLDv2's evaluators) computes it. ``CurveLanesMetric`` in ``metric`` sums them over images;
``files_curvelanes`` scores files on disk.

Per image of (width W, height H), ground truth and predictions in its pixels:

1. Ground-truth lanes without points are dropped; a lane with one point stays (it has no
   pixels, so it is never matched). Predicted lanes with fewer than 2 points are dropped, as
   CondLaneNet's post-processing does before the metric sees them.
2. Coordinates are divided by W / 224 and H / 224.
3. Each lane is a natural cubic spline through its points with the chord length as parameter
   (2 points: the straight segment), sampled at t = 0, 1, 2, ... < chord of every segment, plus
   the last point; every sample is truncated with ``int()``; consecutive samples are joined by
   5-px lines on a 224x224 mask.
4. IoU of every (GT, prediction) pair; Hungarian matching on 1 - IoU (GT as rows, as the
   reference calls it, so ties resolve the same way); a matched pair is a hit when
   IoU > threshold (strictly; the benchmark uses 0.5). TP = hits, FP = n_pred - hits,
   FN = n_gt - hits.

The summary is the reference's: Precision = TP / (TP + FP + eps), Recall = TP / (TP + FN + eps),
F1 = 2PR / (P + R + eps), eps = ``sys.float_info.epsilon``.

The spline is computed with the reference's own sequence of floating-point operations (the
tridiagonal sweep and the segment polynomials), because the truncation to int makes every last
bit visible. Where the reference crashes, this module decides: consecutive duplicate points
(after step 2) make the reference divide by a zero chord and fail on NaN; they are removed
here (a 2-point lane of one repeated point, which the reference draws as nothing, stays a lane
without pixels either way).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from src.metrics.culane import as_points, drop_repeated_points, threshold_key
from src.metrics.raster import LaneMask, draw_lane, empty_mask, iou_matrix

CURVELANES_CANVAS = 224  # the evaluation canvas is 224 x 224
CURVELANES_LANE_WIDTH = 5
CURVELANES_IOU = 0.5


def _second_derivatives(values: np.ndarray, chords: np.ndarray) -> list[float]:
    """Second derivatives of the natural spline of one coordinate over the knots (0 at both
    ends): the tridiagonal system solved by the Thomas algorithm, in the reference's order."""
    n = len(values)
    moments = [0.0] * n
    if n < 3:
        return moments
    slopes = (values[1:] - values[:-1]) / chords
    rhs = (6 * (slopes[1:] - slopes[:-1])).tolist()
    diag = (2 * (chords[:-1] + chords[1:])).tolist()
    lower, upper = chords[:-1].tolist(), chords[1:].tolist()
    sweep, solved = [upper[0] / diag[0]], [rhs[0] / diag[0]]
    for i in range(1, n - 2):
        base = diag[i] - lower[i] * sweep[i - 1]
        sweep.append(upper[i] / base)
        solved.append((rhs[i] - lower[i] * solved[i - 1]) / base)
    moments[n - 2] = solved[n - 3]
    for i in range(n - 4, -1, -1):
        moments[i + 1] = solved[i] - sweep[i] * moments[i + 2]
    return moments


def _segment_samples(values: np.ndarray, chords: np.ndarray, t: list[np.ndarray]) -> np.ndarray:
    """One coordinate of the spline at parameters ``t`` (one array per segment)."""
    moments = np.array(_second_derivatives(values, chords))
    a = values[:-1]
    b = (values[1:] - values[:-1]) / chords - (2 * chords * moments[:-1] + chords * moments[1:]) / 6
    c = moments[:-1] / 2
    d = (moments[1:] - moments[:-1]) / (6 * chords)
    parts = [a[i] + b[i] * ts + c[i] * ts * ts + d[i] * ts * ts * ts for i, ts in enumerate(t)]
    return np.concatenate(parts + [values[-1:]])


def spline_samples(points: np.ndarray) -> np.ndarray:
    """Step 3's samples (float64 (M, 2), before truncation) of a lane on the canvas."""
    if len(points) < 2:
        return points
    xs, ys = points[:, 0], points[:, 1]
    dx, dy = xs[:-1] - xs[1:], ys[:-1] - ys[1:]
    chords = np.sqrt(dx * dx + dy * dy)
    t = [np.arange(np.ceil(h), dtype=np.float64) for h in chords.tolist()]
    return np.stack([_segment_samples(xs, chords, t), _segment_samples(ys, chords, t)], axis=1)


def canvas_points(lane: np.ndarray, ori_size: tuple[int, int]) -> np.ndarray:
    """A lane in image pixels on the 224x224 canvas (step 2), consecutive duplicates removed."""
    height, width = ori_size
    ratio = np.array([width / CURVELANES_CANVAS, height / CURVELANES_CANVAS])
    return drop_repeated_points(as_points(lane) / ratio)


def curvelanes_lane_mask(
    lane: np.ndarray, ori_size: tuple[int, int], width: int = CURVELANES_LANE_WIDTH
) -> LaneMask:
    """The drawn canvas mask of one lane (steps 2 and 3)."""
    samples = spline_samples(canvas_points(lane, ori_size))
    if len(samples) < 2:
        return empty_mask()
    canvas = (CURVELANES_CANVAS, CURVELANES_CANVAS)
    return draw_lane(np.trunc(samples).astype(np.int64), canvas, width)


def curvelanes_image_counts(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    ori_size: tuple[int, int],
    iou_thresholds: Sequence[float] = (CURVELANES_IOU,),
    width: int = CURVELANES_LANE_WIDTH,
) -> np.ndarray:
    """One image's counts: int64 array (n_thresholds, 3) of [TP, FP, FN] per threshold.

    ``preds``, ``gts``: lanes as (N, 2) (x, y) arrays in the pixels of the image, whose
    ``ori_size`` is (height, width).
    """
    kept_preds = [lane for lane in preds if len(as_points(lane)) >= 2]
    kept_gts = [lane for lane in gts if len(as_points(lane)) >= 1]
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    if kept_preds and kept_gts:
        gt_masks = [curvelanes_lane_mask(lane, ori_size, width) for lane in kept_gts]
        pred_masks = [curvelanes_lane_mask(lane, ori_size, width) for lane in kept_preds]
        ious = iou_matrix(gt_masks, pred_masks, empty_union=0.0)
        rows, cols = linear_sum_assignment(1 - ious)
        matched = ious[rows, cols]
        counts[:, 0] = (matched[None, :] > thresholds[:, None]).sum(axis=1)
    counts[:, 1] = len(kept_preds) - counts[:, 0]
    counts[:, 2] = len(kept_gts) - counts[:, 0]
    return counts


def curvelanes_summary(counts: np.ndarray, iou_thresholds: Sequence[float]) -> dict[str, dict]:
    """Summed [TP, FP, FN] per threshold -> {key: {TP, FP, FN, Precision, Recall, F1}}, with
    the reference's epsilon in every denominator."""
    eps = sys.float_info.epsilon
    out = {}
    for thr, (tp, fp, fn) in zip(iou_thresholds, np.asarray(counts).tolist(), strict=True):
        precision = tp / (tp + fp + eps)
        recall = tp / (tp + fn + eps)
        f1 = 2 * precision * recall / (precision + recall + eps)
        out[threshold_key(thr)] = {
            "TP": int(tp),
            "FP": int(fp),
            "FN": int(fn),
            "Precision": precision,
            "Recall": recall,
            "F1": f1,
        }
    return out
