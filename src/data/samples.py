"""The in-memory record of one labelled image, shared by the TuSimple and CULane readers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LaneSample:
    """One image and its ground truth, as read from the dataset's label/list files.

    Attributes:
        img_name: image path relative to the dataset root as written in the label/list file,
            without a leading slash.
        img_path: absolute image path.
        lanes: ground-truth lanes in original-image pixels, float64 arrays (N, 2) of (x, y), in
            the file's order: what evaluation and drawing use.
        train_lanes: the lanes the training targets are built from (the reader's filtering
            applied, e.g. CULane drops points with negative coordinates); often ``lanes`` itself.
        source: ``file:line`` that defined this sample, for error messages.
        category: CULane test category ("normal", "crowd", ...) or None.
        h_samples: TuSimple rows (y) of the label line; None for CULane.
        gt_xs: TuSimple "lanes" field of the label line (x per h_sample, negative = no point).
    """

    img_name: str
    img_path: str
    lanes: tuple[np.ndarray, ...]
    train_lanes: tuple[np.ndarray, ...]
    source: str
    category: str | None = None
    h_samples: tuple[int, ...] | None = None
    gt_xs: tuple[tuple[int, ...], ...] | None = None
