"""The in-memory record of one labelled image, shared by every reader (TuSimple, CULane,
LLAMAS, CurveLanes and the custom CULane-format data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LaneSample:
    """One image and its ground truth, as read from the dataset's label/list files.

    Attributes:
        img_name: image path relative to the dataset root as written in the label/list file,
            without a leading slash (CurveLanes: relative to the split folder, as its list
            writes it, ``images/<md5>.jpg``); prediction files are named after it.
        img_path: absolute image path.
        source: ``file:line`` that defined this sample, for error messages.
        lanes: ground-truth lanes in original-image pixels, float64 arrays (N, 2) of (x, y), in
            the file's order: what evaluation and drawing use. Empty when ``label_path`` is
            set; use ``load_lanes()``.
        train_lanes: the lanes the training targets are built from (the reader's filtering
            applied, e.g. CULane drops points with negative coordinates); often ``lanes`` itself.
        category: CULane test category ("normal", "crowd", ...) or None.
        h_samples: TuSimple rows (y) of the label line; None for CULane.
        gt_xs: TuSimple "lanes" field of the label line (x per h_sample, negative = no point).
        label_path: CULane ``.lines.txt`` the lanes are read from on demand (None: in memory).
        label_reader: the reader's function that gives (lanes, train_lanes) of ``label_path``
            (a module-level function, so samples pickle cheaply into DataLoader workers).
        ori_size: (height, width) of the original image when the reader knows it (LLAMAS:
            fixed; CurveLanes: read from the image header; custom: the configured size);
            None: the dataset config's ori_h x ori_w.
        cut_height: rows cut from the top of this image before resizing, when it depends on
            the image (CurveLanes: 640 / 180 / 368 by size); None: the dataset config's.
    """

    img_name: str
    img_path: str
    source: str
    lanes: tuple[np.ndarray, ...] = ()
    train_lanes: tuple[np.ndarray, ...] = ()
    category: str | None = None
    h_samples: tuple[int, ...] | None = None
    gt_xs: tuple[tuple[int, ...], ...] | None = None
    label_path: str | None = None
    label_reader: Callable[[str], tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] | None = (
        None
    )
    ori_size: tuple[int, int] | None = None
    cut_height: int | None = None

    def load_lanes(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """(lanes, train_lanes), reading ``label_path`` when the sample has one."""
        if self.label_path is None or self.label_reader is None:
            return self.lanes, self.train_lanes
        return self.label_reader(self.label_path)
