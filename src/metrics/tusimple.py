"""TuSimple metric definition: the benchmark's ``lane.py`` per image, vectorised
(``TuSimpleMetric`` in ``metric`` averages it over images).

Per image (lanes are x per h_sample, negative = no point):

1. If the run time is over 200 ms or there are more than n_gt + 2 predictions: accuracy 0,
   FP 0, FN 1.
2. Each GT lane gets a pixel threshold 20 / cos(arctan k), k the least-squares slope of
   x = k * y + b over its points with x >= 0 (20 with fewer than 2 points).
3. Accuracy of a prediction for a GT lane: the fraction of all rows where |pred - gt| < threshold,
   after replacing negative values on either side by -100 (rows empty on both sides count).
4. Each GT lane takes its best accuracy over all predictions (no one-to-one matching); below 0.85
   it is missed (FN), otherwise matched. FP = n_pred - matched (negative when one prediction
   matches several GT lanes, as in the benchmark).
5. With more than 4 GT lanes one FN is forgiven (if any) and the lowest accuracy is dropped.
6. Image accuracy = sum / max(min(4, n_gt), 1); FP / n_pred (0 without predictions);
   FN / max(min(n_gt, 4), 1). Reported values are means over images.

F1 as CLRNet reports it from the mean FP and FN rates: P = 1 - FP, R = (1 - FP) / (1 - FP + FN),
F1 = 2PR / (P + R) (0 where a denominator is 0, where the reference would divide by zero).

Per-image values equal the benchmark's exactly (same float operations in the same order), except
the slope: the benchmark fits it with scikit-learn (an SVD least-squares solve), here it is the
closed form cov(x, y) / var(y); the two differ by rounding only, which can change a result only
when |pred - gt| equals the threshold to the last bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PIXEL_THRESHOLD = 20.0
MATCH_ACCURACY = 0.85
MAX_RUN_TIME_MS = 200.0
_MISSING = -100.0


def _lanes_array(lanes: Sequence[Sequence[float]], n_rows: int, what: str) -> np.ndarray:
    arr = np.asarray(lanes, dtype=np.float64) if len(lanes) else np.zeros((0, n_rows))
    if arr.ndim != 2 or arr.shape[1] != n_rows:
        raise ValueError(f"every {what} lane must have one x per h_sample ({n_rows} values)")
    return arr


def gt_thresholds(gt: np.ndarray, h_samples: np.ndarray) -> np.ndarray:
    """Per GT lane (rows of ``gt``) the angle-adjusted pixel threshold 20 / cos(arctan k)."""
    valid = gt >= 0
    n = valid.sum(axis=1)
    ys = np.broadcast_to(h_samples, gt.shape)
    safe_n = np.maximum(n, 1)
    y_mean = np.where(valid, ys, 0.0).sum(axis=1) / safe_n
    x_mean = np.where(valid, gt, 0.0).sum(axis=1) / safe_n
    dy = np.where(valid, ys - y_mean[:, None], 0.0)
    dx = np.where(valid, gt - x_mean[:, None], 0.0)
    syy = (dy * dy).sum(axis=1)
    sxy = (dx * dy).sum(axis=1)
    fit = (n > 1) & (syy > 0)
    k = np.where(fit, sxy / np.where(fit, syy, 1.0), 0.0)
    theta = np.where(n > 1, np.arctan(k), 0.0)
    return PIXEL_THRESHOLD / np.cos(theta)


def tusimple_image_scores(
    pred: Sequence[Sequence[float]],
    gt: Sequence[Sequence[float]],
    h_samples: Sequence[float],
    run_time: float | None = None,
) -> tuple[float, float, float]:
    """(accuracy, FP rate, FN rate) of one image, as the benchmark's ``LaneEval.bench``.

    ``run_time`` in ms; None skips the run-time rule. Raises ValueError when a lane does not
    have one value per h_sample (the benchmark's "Format of lanes error").
    """
    ys = np.asarray(h_samples, dtype=np.float64)
    n_rows = len(ys)
    preds = _lanes_array(pred, n_rows, "predicted")
    gts = _lanes_array(gt, n_rows, "GT")
    n_pred, n_gt = len(preds), len(gts)
    if (run_time is not None and run_time > MAX_RUN_TIME_MS) or n_pred > n_gt + 2:
        return 0.0, 0.0, 1.0
    if n_gt and n_pred:
        thresholds = gt_thresholds(gts, ys)
        p = np.where(preds >= 0, preds, _MISSING)
        g = np.where(gts >= 0, gts, _MISSING)
        close = np.abs(p[:, None, :] - g[None, :, :]) < thresholds[None, :, None]
        accs = close.sum(axis=2) / n_rows  # (n_pred, n_gt)
        best = accs.max(axis=0).tolist()
    else:
        best = [0.0] * n_gt
    matched = sum(1 for a in best if a >= MATCH_ACCURACY)
    fn = float(n_gt - matched)
    fp = float(n_pred - matched)
    if n_gt > 4 and fn > 0:
        fn -= 1
    total = 0.0
    for a in best:  # sequential, like the benchmark's sum()
        total += a
    if n_gt > 4:
        total -= min(best)
    denom = max(min(4.0, n_gt), 1.0)
    return total / denom, (fp / n_pred if n_pred > 0 else 0.0), fn / denom


def run_time_problems(run_time_ms: float | None) -> list[str]:
    """What is wrong with a fixed run time (evaluation.tusimple_run_time_ms): negative, or over
    the benchmark's MAX_RUN_TIME_MS, which scores every image Accuracy 0, FN 1."""
    if run_time_ms is None:
        return []
    if not 0 <= run_time_ms <= MAX_RUN_TIME_MS:
        return [
            f"evaluation.tusimple_run_time_ms={run_time_ms!r} must lie in [0, "
            f"{MAX_RUN_TIME_MS:g}] ms: over {MAX_RUN_TIME_MS:g} ms the TuSimple benchmark scores "
            "every image Accuracy 0, FN 1 (null: the measured time)"
        ]
    return []


def tusimple_f1(fp: float, fn: float) -> float:
    """CLRNet's TuSimple F1 from the mean FP and FN rates (0 where undefined)."""
    tp = 1.0 - fp
    if tp + fp == 0 or tp + fn == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def tusimple_summary(accuracy_sum: float, fp_sum: float, fn_sum: float, n_images: int) -> dict:
    """``{"Accuracy", "FP", "FN", "F1"}`` (floats) from per-image sums; zeros without images."""
    if n_images == 0:
        return {"Accuracy": 0.0, "FP": 0.0, "FN": 0.0, "F1": 0.0}
    fp = fp_sum / n_images
    fn = fn_sum / n_images
    return {"Accuracy": accuracy_sum / n_images, "FP": fp, "FN": fn, "F1": tusimple_f1(fp, fn)}


def no_lane_note(accuracy: float, fp: float, fn: float) -> str | None:
    """Why a TuSimple result says nothing about a model, or None. CLRNet's F1 counts
    tp = 1 - FP, so a model that predicts no lane scores FP 0, FN 1 and F1 0.667 (Accuracy 0):
    the official value, kept, and marked with this note wherever it is reported (metrics.json,
    the sweep report). Marked: no row of any GT lane hit (Accuracy 0: no lane predicted, or
    every image zeroed by the run-time / more-than-GT+2-lanes rule), or every GT lane missed
    (FN 1)."""
    if accuracy == 0.0 and fp == 0.0:
        return (
            f"no predicted lane scored (Accuracy 0, FP 0, FN {fn:.3g}): F1 "
            f"{tusimple_f1(fp, fn):.3f} is the official formula's value for empty predictions, "
            "not a lane detector"
        )
    if accuracy == 0.0 or fn >= 1.0:
        return (
            f"no GT lane found (Accuracy {accuracy:.3g}, FN {fn:.3g}): F1 "
            f"{tusimple_f1(fp, fn):.3f} counts no detected lane"
        )
    return None


def result_note(result: Mapping[str, Any], prefix: str = "") -> str | None:
    """``no_lane_note`` of a result dict holding ``<prefix>Accuracy``, ``FP`` and ``FN`` (a
    TuSimple metric result, or a logged row with prefix "val/"); None for other results."""
    keys = [f"{prefix}{k}" for k in ("Accuracy", "FP", "FN")]
    values = [result.get(k) for k in keys]
    if not all(isinstance(v, (int, float)) for v in values):
        return None
    return no_lane_note(*(float(v) for v in values))
