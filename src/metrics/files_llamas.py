"""Scoring LLAMAS prediction files on disk, as the official evaluator does (used by
scripts/evaluate.py llamas).

Ground truth: every ``<root>/labels/<split>/**/<name>.json`` (the official evaluator walks the
folder), turned into lanes by ``llamas_labels``. Predictions: ``<pred>/<recording>/<name>.lines
.txt`` (the label's last two path parts, ``.json`` -> ``.lines.txt``), one lane per line,
``x y x y ...`` in pixels of the 1276x717 image (the CULane format). A missing prediction file
counts as an image without predicted lanes (the official evaluator crashes there) and is
counted and reported; a bad file raises FileFormatError naming ``file:line``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from src.metrics.culane import culane_summary
from src.metrics.files import CULaneFileScore, FileFormatError, read_culane_lanes
from src.metrics.llamas import LLAMAS_LANE_WIDTH, llamas_image_counts
from src.metrics.llamas_labels import read_llamas_label

# Split name -> folder under labels/ (the official names; "val" as CLRNet calls it).
LLAMAS_LABEL_SPLITS = {"train": "train", "valid": "valid", "val": "valid"}
LLAMAS_DOWNLOAD_HINT = (
    "download the LLAMAS labels and color images from https://unsupervised-llamas.com (the "
    "test labels are not public: papers report the valid split)"
)


def llamas_split_folder(split: str) -> str:
    """The official folder name of a split with labels (``val`` -> ``valid``)."""
    if split not in LLAMAS_LABEL_SPLITS:
        hint = " (the test labels are not public)" if split == "test" else ""
        raise ValueError(
            f"unknown LLAMAS split {split!r} with labels: expected one of "
            f"{', '.join(LLAMAS_LABEL_SPLITS)}{hint}"
        )
    return LLAMAS_LABEL_SPLITS[split]


def llamas_label_files(root: str | os.PathLike, split: str) -> list[Path]:
    """Every ``.json`` label under ``<root>/labels/<split>``, sorted; FileNotFoundError naming
    what to get when the folder is missing or holds no labels."""
    folder = Path(root) / "labels" / llamas_split_folder(split)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"LLAMAS label folder {folder} does not exist: expected "
            f"<root>/labels/{folder.name}/<recording>/<name>.json ({LLAMAS_DOWNLOAD_HINT})"
        )
    paths = sorted(
        Path(top) / name
        for top, _, names in os.walk(folder)
        for name in names
        if name.endswith(".json")
    )
    if not paths:
        raise FileNotFoundError(f"no .json labels under {folder} ({LLAMAS_DOWNLOAD_HINT})")
    return paths


def prediction_name_for_label(label_path: str | os.PathLike) -> str:
    """``.../labels/valid/<recording>/<name>.json`` -> ``<recording>/<name>.lines.txt``."""
    path = Path(label_path)
    return f"{path.parent.name}/{path.name.removesuffix('.json')}.lines.txt"


def score_llamas_files(
    pred_dir: str | os.PathLike,
    gt_root: str | os.PathLike,
    split: str = "valid",
    iou_thresholds: Sequence[float] = (0.5,),
    width: int = LLAMAS_LANE_WIDTH,
) -> CULaneFileScore:
    """Score the predictions of every labelled image of ``split``; ``result`` has the
    structure of ``LLAMASMetric.compute()``."""
    counts = np.zeros((len(iou_thresholds), 3), dtype=np.int64)
    missing = []
    labels = llamas_label_files(gt_root, split)
    for label_path in labels:
        gts = read_llamas_label(label_path).lanes
        name = prediction_name_for_label(label_path)
        pred_path = Path(pred_dir) / name
        if pred_path.is_file():
            preds = read_culane_lanes(pred_path)
        else:
            missing.append(name)
            preds = []
        try:
            counts += llamas_image_counts(preds, gts, iou_thresholds, width)
        except ValueError as err:
            raise FileFormatError(f"{pred_path} (GT {label_path}): cannot score: {err}") from None
    return CULaneFileScore(culane_summary(counts, iou_thresholds), len(labels), missing)
