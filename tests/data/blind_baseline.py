"""The image-blind baseline for judging the synthetic dataset's difficulty, scored with the
project's TuSimple metric."""

from __future__ import annotations

import numpy as np

from src.metrics import TuSimpleMetric


def tusimple_f1(predictions: list[list[list[float]]], labels: list[dict]) -> dict[str, float]:
    """Accuracy, FP, FN (image means) and F1 as CLRNet reports it, with src.metrics."""
    metric = TuSimpleMetric()
    metric.update(predictions, [g["lanes"] for g in labels], [g["h_samples"] for g in labels])
    result = metric.compute()
    return {k.lower(): float(result[k]) for k in ("Accuracy", "FP", "FN", "F1")}


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
