"""LLAMAS lane metric: one image's TP/FP/FN at IoU thresholds, as the official evaluator
(karstenBehrendt/unsupervised_llamas ``culane_metric/evaluate.py``, per image
``culane_metric``; CLRNet's copy adds several thresholds) computes it. ``LLAMASMetric`` in
``metric`` sums them over images; ``files_llamas`` scores files on disk.

Per image:

1. Predicted lanes with fewer than 2 points are dropped (the official prediction reader does).
2. Each prediction: exact consecutive duplicate points removed (the official code warns and
   removes them), a parametric spline (``splprep``, s=0, k = min(3, n - 1)) sampled at 50
   evenly spaced parameter values, truncated to int32.
3. Ground-truth lanes (``llamas_labels``: the points of rows 300..716) are drawn as they are,
   truncated to int32: no spline.
4. Every lane is a 30-px polyline on a 717x1276 mask; IoU of every (prediction, GT) pair;
   Hungarian matching on 1 - IoU; a matched pair is a TP when IoU > threshold (strictly).
   FP = n_pred - TP, FN = n_gt - TP; Precision, Recall and F1 are 0 when TP is 0.

Where the official code crashes, this module decides:

* a prediction left with fewer than 2 points once duplicates are removed (``splprep`` fails):
  dropped, like shorter lanes (the CULane metric here does the same);
* a prediction and a GT lane that both have no pixel in the image (0 / 0 makes the IoU NaN and
  the assignment fail): IoU 0;
* a GT lane with fewer than 2 points (the official evaluator asserts while loading labels, and
  ``llamas_labels`` leaves such lanes out): dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from src.metrics.culane import as_points, matched_ious, python_lane_points
from src.metrics.raster import LaneMask, draw_lane, iou_matrix

LLAMAS_IMG_SIZE = (717, 1276)  # (height, width)
LLAMAS_LANE_WIDTH = 30
LLAMAS_SPLINE_SAMPLES = 50


def llamas_pred_masks(
    preds: Sequence[np.ndarray], width: int = LLAMAS_LANE_WIDTH
) -> list[LaneMask]:
    """Drawn masks of the predictions the metric keeps (steps 1, 2, 4)."""
    masks = []
    for lane in preds:
        points = python_lane_points(lane, LLAMAS_SPLINE_SAMPLES)
        if points is not None:
            masks.append(draw_lane(points, LLAMAS_IMG_SIZE, width))
    return masks


def llamas_gt_masks(gts: Sequence[np.ndarray], width: int = LLAMAS_LANE_WIDTH) -> list[LaneMask]:
    """Drawn masks of the ground-truth lanes (steps 3, 4)."""
    masks = []
    for lane in gts:
        points = as_points(lane)
        if len(points) >= 2:
            masks.append(draw_lane(points.astype(np.int32), LLAMAS_IMG_SIZE, width))
    return masks


def llamas_image_counts(
    preds: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = (0.5,),
    width: int = LLAMAS_LANE_WIDTH,
) -> np.ndarray:
    """One image's counts: int64 array (n_thresholds, 3) of [TP, FP, FN] per threshold.

    ``preds``: lanes as (N, 2) (x, y) pixel arrays, as read from a ``.lines.txt`` file;
    ``gts``: the image's ground truth (``LlamasLanes.lanes``).
    """
    pred_masks = llamas_pred_masks(preds, width)
    gt_masks = llamas_gt_masks(gts, width)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    counts = np.zeros((len(thresholds), 3), dtype=np.int64)
    if pred_masks and gt_masks:
        matched = matched_ious(iou_matrix(pred_masks, gt_masks, empty_union=0.0))
        counts[:, 0] = (matched[None, :] > thresholds[:, None]).sum(axis=1)
    counts[:, 1] = len(pred_masks) - counts[:, 0]
    counts[:, 2] = len(gt_masks) - counts[:, 0]
    return counts
