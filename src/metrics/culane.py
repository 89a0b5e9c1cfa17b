"""CULane metric definition: one image's TP/FP/FN at IoU thresholds (``CULaneMetric`` in
``metric`` sums them over images).

Default recipe (``evaluator="python"``): the Python evaluator used by LaneATT, CLRNet and SRLane.
Per image:

1. Lanes with fewer than 2 points are dropped.
2. Each lane is interpolated with a parametric spline (``scipy.interpolate.splprep``, s=0,
   k = min(3, n - 1), chord-length parameter) sampled at (n - 1) * 5 + 1 evenly spaced parameter
   values; the samples are truncated to int.
3. Each lane is drawn as a polyline of width 30 on a 590x1640 mask; IoU = |A & B| / |A | B|.
4. Predictions and GT lanes are matched one to one by ``scipy.optimize.linear_sum_assignment``
   on 1 - IoU; a matched pair is a TP when IoU > threshold (strictly).
5. FP = n_pred - TP, FN = n_gt - TP.

``evaluator="cpp"`` uses the original C++ tool's recipe instead (see ``culane_cpp``).

Inputs the Python evaluator crashes on, and what happens here instead:

* repeated consecutive points (``splprep`` rejects a zero-length chord): exact consecutive
  duplicates are dropped before the spline; a lane left with fewer than 2 points is dropped
  like any other lane with fewer than 2 points;
* two lanes that are both entirely outside the image (IoU 0 / 0, which makes the assignment
  fail): IoU 0;
* a missing prediction file (``score_culane_files``): the image has no predicted lanes, and the
  number of such files is reported.

The drawing and IoU are computed on bounding-box canvases (``raster``), which gives exactly the
full-mask pixel counts, so results equal the reference image by image at every threshold.
Lanes are (x, y) pixels of the original image, whose size is the canvas (590x1640 for CULane).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy.interpolate import splev, splprep
from scipy.optimize import linear_sum_assignment

from src.metrics.culane_cpp import cpp_lane_points, scnn_match
from src.metrics.raster import LaneMask, draw_lane, empty_mask, iou_matrix

CULANE_IMG_SIZE = (590, 1640)  # (height, width)
CULANE_LANE_WIDTH = 30
# CLRNet's mF1 thresholds: 0.50, 0.55, ..., 0.95.
MF1_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
# The test split's categories (list/test_split/test<i>_<name>.txt).
CULANE_CATEGORIES = (
    "normal",
    "crowd",
    "hlight",
    "shadow",
    "noline",
    "arrow",
    "curve",
    "cross",
    "night",
)
EVALUATORS = ("python", "cpp")
_SAMPLES_PER_SEGMENT = 5


def threshold_key(threshold: float) -> str:
    """The result key of an IoU threshold: ``str`` of the value rounded to 10 decimals.

    ``0.5 -> "0.5"``, ``0.55 -> "0.55"``, and ``0.7000000000000001`` (``np.arange`` noise)
    ``-> "0.7"``; for thresholds written in a config this equals ``str(threshold)``.
    """
    return repr(round(float(threshold), 10))


def iou_threshold_problems(thresholds: Sequence[float]) -> list[str]:
    """What is wrong with a list of IoU thresholds: none, one outside [0, 1) (a pair matches
    when its IoU is above the threshold, so 1 or more matches nothing and a negative value
    everything), or one repeated (results are keyed by threshold)."""
    if not thresholds:
        return ["no IoU threshold: give at least one, e.g. 0.5"]
    problems = [
        f"IoU threshold {t!r} must lie in [0, 1) (a lane pair matches when IoU > threshold)"
        for t in thresholds
        if not (isinstance(t, (int, float)) and 0 <= t < 1)  # NaN fails both comparisons
    ]
    keys = [threshold_key(t) for t in thresholds if isinstance(t, (int, float))]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        problems.append(f"IoU threshold(s) {', '.join(repeated)} given more than once")
    return problems


def drop_repeated_points(points: np.ndarray) -> np.ndarray:
    """``points`` without exact consecutive duplicates (which the spline fit rejects)."""
    if len(points) < 2:
        return points
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)
    return points if keep.all() else points[keep]


def python_lane_points(points: np.ndarray, num_samples: int | None = None) -> np.ndarray | None:
    """The Python evaluator's drawn polyline for one lane: (M, 2) int32, or None if dropped.

    ``num_samples``: spline samples; None = CULane's (n - 1) * 5 + 1 (LLAMAS uses 50).
    """
    pts = drop_repeated_points(as_points(points))
    if len(pts) < 2:
        return None
    tck, u = splprep([pts[:, 0], pts[:, 1]], s=0, k=min(3, len(pts) - 1))
    if num_samples is None:
        num_samples = (len(u) - 1) * _SAMPLES_PER_SEGMENT + 1
    params = np.linspace(0.0, 1.0, num=num_samples)
    xs, ys = splev(params, tck)
    return np.stack([xs, ys], axis=1).astype(np.int32)


def as_points(points: np.ndarray) -> np.ndarray:
    """A lane as a float64 (N, 2) array of finite (x, y); ValueError otherwise."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all():
        raise ValueError("lane coordinates must be finite")
    return pts


def kept_lanes(lanes: Sequence[np.ndarray], evaluator: str = "python") -> list[np.ndarray]:
    """The lanes a recipe counts, as float64 (N, 2) arrays. Python recipe: lanes with fewer than
    2 points (after dropping repeated consecutive points) are left out; C++ recipe: all stay."""
    check_evaluator(evaluator)
    out = [as_points(lane) for lane in lanes]
    if evaluator == "python":
        out = [pts for pts in (drop_repeated_points(p) for p in out) if len(pts) >= 2]
    return out


def lane_masks(
    lanes: Sequence[np.ndarray],
    evaluator: str = "python",
    img_size: tuple[int, int] = CULANE_IMG_SIZE,
    width: int = CULANE_LANE_WIDTH,
) -> list[LaneMask]:
    """The drawn masks of the lanes ``kept_lanes`` keeps (C++ recipe: a lane it cannot draw, with
    fewer than 2 points, is an invalid mask whose IoU with everything is 0)."""
    masks = []
    for lane in kept_lanes(lanes, evaluator):
        pts = python_lane_points(lane) if evaluator == "python" else cpp_lane_points(lane)
        masks.append(empty_mask(valid=False) if pts is None else draw_lane(pts, img_size, width))
    return masks


def check_evaluator(evaluator: str) -> None:
    """Raise for an unknown recipe name."""
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")


def culane_iou_matrix(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    evaluator: str = "python",
    img_size: tuple[int, int] = CULANE_IMG_SIZE,
    width: int = CULANE_LANE_WIDTH,
) -> np.ndarray:
    """IoU matrix (n_pred, n_gt) of one image's lanes, over the lanes the recipe keeps."""
    pred_masks = lane_masks(preds, evaluator, img_size, width)
    gt_masks = lane_masks(gts, evaluator, img_size, width)
    empty_union = np.nan if evaluator == "cpp" else 0.0
    return iou_matrix(pred_masks, gt_masks, empty_union=empty_union)


def matched_ious(ious: np.ndarray, evaluator: str = "python") -> np.ndarray:
    """IoUs of the one-to-one matched (pred, gt) pairs of an (n_pred, n_gt) IoU matrix.

    Python recipe: Hungarian assignment maximising the summed IoU (``linear_sum_assignment`` on
    1 - IoU, as the reference calls it, so ties resolve the same way). C++ recipe: the tool's
    tolerant Kuhn-Munkres.
    """
    if ious.size == 0:
        return np.zeros(0, dtype=np.float64)
    if evaluator == "cpp":
        gt_match = scnn_match(ious.T)
        return np.array([ious[p, g] for g, p in enumerate(gt_match) if p >= 0], dtype=np.float64)
    rows, cols = linear_sum_assignment(1 - ious)
    return ious[rows, cols]


def culane_image_counts(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = (0.5,),
    evaluator: str = "python",
    img_size: tuple[int, int] = CULANE_IMG_SIZE,
    width: int = CULANE_LANE_WIDTH,
) -> np.ndarray:
    """One image's counts: int64 array (n_thresholds, 3) of [TP, FP, FN] per threshold.

    ``preds`` and ``gts`` are lanes as (N, 2) arrays of (x, y) pixels in the ``img_size``
    image (any point order the file has; CULane files run bottom -> top).
    """
    pred_lanes = kept_lanes(preds, evaluator)
    gt_lanes = kept_lanes(gts, evaluator)
    n_pred, n_gt = len(pred_lanes), len(gt_lanes)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    if n_pred and n_gt:
        ious = culane_iou_matrix(pred_lanes, gt_lanes, evaluator, img_size, width)
        matched = matched_ious(ious, evaluator)
        counts[:, 0] = (matched[None, :] > thresholds[:, None]).sum(axis=1)
    counts[:, 1] = n_pred - counts[:, 0]
    counts[:, 2] = n_gt - counts[:, 0]
    return counts


def summarize_counts(counts: np.ndarray, iou_thresholds: Sequence[float]) -> dict[str, dict]:
    """Summed [TP, FP, FN] per threshold -> {key: {TP, FP, FN, Precision, Recall, F1}}.

    Precision, Recall and F1 are 0 when TP is 0, as in the reference.
    """
    out = {}
    for thr, (tp, fp, fn) in zip(iou_thresholds, np.asarray(counts).tolist(), strict=True):
        precision = tp / (tp + fp) if tp != 0 else 0.0
        recall = tp / (tp + fn) if tp != 0 else 0.0
        f1 = 2 * precision * recall / (precision + recall) if tp != 0 else 0.0
        out[threshold_key(thr)] = {
            "TP": int(tp),
            "FP": int(fp),
            "FN": int(fn),
            "Precision": precision,
            "Recall": recall,
            "F1": f1,
        }
    return out


def mean_f1(summary: dict[str, dict]) -> float:
    """CLRNet's mF1: the mean of the per-threshold F1 values (accumulated as F1 / n, in
    threshold order, as the reference does)."""
    return mean_of(v["F1"] for v in summary.values() if isinstance(v, dict))


def mean_of(values: Iterable[float]) -> float:
    """Mean accumulated as the reference does: sum of value / n, left to right."""
    values = list(values)
    total = 0.0
    for v in values:
        total += v / len(values)
    return total


def culane_summary(counts: np.ndarray, iou_thresholds: Sequence[float]) -> dict:
    """``summarize_counts`` plus "mF1" when there are several thresholds."""
    out: dict = summarize_counts(counts, iou_thresholds)
    if len(iou_thresholds) > 1:
        out["mF1"] = mean_f1(out)
    return out
