"""A small TuSimple metric (per docs/lanes.md) for judging the synthetic dataset's difficulty."""

from __future__ import annotations

import numpy as np


def _line_accuracy(pred: np.ndarray, gt: np.ndarray, threshold: float) -> float:
    pred = np.where(pred < 0, -100.0, pred)
    gt = np.where(gt < 0, -100.0, gt)
    return float(np.mean(np.abs(pred - gt) < threshold))


def image_scores(
    pred_lanes: list[list[float]], gt_lanes: list[list[float]], h_samples: list[int]
) -> tuple[float, float, float]:
    """(accuracy, FP, FN) of one image, as the TuSimple benchmark computes them."""
    if len(pred_lanes) > len(gt_lanes) + 2:
        return 0.0, 0.0, 1.0
    ys = np.asarray(h_samples, dtype=np.float64)
    thresholds = []
    for gt in gt_lanes:
        x = np.asarray(gt, dtype=np.float64)
        keep = x >= 0
        if keep.sum() > 1:
            slope = np.polyfit(ys[keep], x[keep], 1)[0]
            thresholds.append(20.0 / np.cos(np.arctan(slope)))
        else:
            thresholds.append(20.0)
    accuracies, matched, fn = [], 0.0, 0.0
    for gt, threshold in zip(gt_lanes, thresholds, strict=True):
        best = max(
            (
                _line_accuracy(np.asarray(p, float), np.asarray(gt, float), threshold)
                for p in pred_lanes
            ),
            default=0.0,
        )
        if best < 0.85:
            fn += 1
        else:
            matched += 1
        accuracies.append(best)
    fp = len(pred_lanes) - matched
    total = sum(accuracies)
    if len(gt_lanes) > 4 and fn > 0:
        fn -= 1
    if len(gt_lanes) > 4:
        total -= min(accuracies)
    denominator = max(min(4, len(gt_lanes)), 1)
    return (
        total / denominator,
        fp / len(pred_lanes) if pred_lanes else 0.0,
        fn / denominator,
    )


def tusimple_f1(predictions: list[list[list[float]]], labels: list[dict]) -> dict[str, float]:
    """Accuracy, FP, FN (image means) and F1 as CLRNet reports it."""
    scores = np.array(
        [
            image_scores(p, g["lanes"], g["h_samples"])
            for p, g in zip(predictions, labels, strict=True)
        ]
    )
    accuracy, fp, fn = scores.mean(axis=0)
    precision = 1 - fp
    recall = (1 - fp) / (1 - fp + fn) if (1 - fp + fn) > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"accuracy": float(accuracy), "fp": float(fp), "fn": float(fn), "f1": float(f1)}


def mean_lane_prediction(train_labels: list[dict], n_slots: int | None = None) -> list[list[float]]:
    """The image-blind baseline: lanes ordered left to right, averaged per row and slot over the
    training labels; as many slots as the most common lane count."""
    counts = [len(label["lanes"]) for label in train_labels]
    n_slots = n_slots or int(np.bincount(counts).argmax())
    rows = len(train_labels[0]["h_samples"])
    sums, hits = np.zeros((n_slots, rows)), np.zeros((n_slots, rows))
    for label in train_labels:
        lanes = np.asarray(label["lanes"], dtype=np.float64)
        # Order by mean x over valid points, then align the outermost lanes to the slots.
        order = np.argsort([lane[lane >= 0].mean() for lane in lanes])
        lanes = lanes[order]
        offset = (n_slots - len(lanes)) // 2
        for k, lane in enumerate(lanes):
            slot = k + offset
            if 0 <= slot < n_slots:
                valid = lane >= 0
                sums[slot, valid] += lane[valid]
                hits[slot, valid] += 1
    mean = np.where(hits > len(train_labels) * 0.3, sums / np.maximum(hits, 1), -2.0)
    return [list(row) for row in mean]
