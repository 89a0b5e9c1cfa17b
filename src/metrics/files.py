"""Scoring prediction files on disk, as the official tools do (used by scripts/evaluate.py).

CULane: a list file names the images (``/driver_37_30frame/x.MP4/00000.jpg``, one per line;
only the first whitespace-separated field is used, blank lines are skipped); the lanes of image
``p`` are read from ``<root>/<p minus leading "/" and ".jpg">.lines.txt`` under the prediction
and the GT directory. A missing prediction file counts as an image without predicted lanes (the
Python evaluator crashes there, the C++ tool does the same as here) and is counted and reported;
a missing GT file is an error.

TuSimple: both files are JSON Lines; every GT image needs exactly one prediction line with
``raw_file``, ``lanes`` and ``run_time`` (ms), as the benchmark requires.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.metrics.culane import (
    CULANE_IMG_SIZE,
    CULANE_LANE_WIDTH,
    check_evaluator,
    culane_image_counts,
    culane_summary,
    mean_of,
)
from src.metrics.tusimple import tusimple_image_scores, tusimple_summary
from src.metrics.writers import culane_label_name


def read_culane_lanes(path: str | os.PathLike, evaluator: str = "python") -> list[np.ndarray]:
    """The lanes of one ``.lines.txt`` file as (N, 2) float64 arrays (file order).

    Python recipe: every line's numbers in (x, y) pairs (an odd count is an error), blank lines
    give empty lanes that the metric drops. C++ recipe: read as the tool's stream parser does
    (pairs until the first token that is not a number), values rounded to float32 later by the
    metric; every line, blank ones included, is a lane. Raises FileNotFoundError when missing.
    """
    check_evaluator(evaluator)
    text = Path(path).read_text()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lanes = []
    for line in lines:
        tokens = line.split()
        if evaluator == "cpp":
            values = []
            for token in tokens:
                try:
                    values.append(float(token))
                except ValueError:
                    break
            values = values[: len(values) // 2 * 2]
        else:
            if len(tokens) % 2:
                raise ValueError(f"{path}: a lane line has an odd number of coordinates")
            values = [float(t) for t in tokens]
        lanes.append(np.array(values, dtype=np.float64).reshape(-1, 2))
    return lanes


def read_culane_list(list_path: str | os.PathLike) -> list[str]:
    """Image paths of a CULane list file (first field of each non-blank line)."""
    names = []
    for line in Path(list_path).read_text().splitlines():
        fields = line.split()
        if fields:
            names.append(fields[0])
    return names


@dataclass
class CULaneFileScore:
    """Result of scoring a prediction directory: the metric's ``compute()`` dict, the number of
    images, and the images whose prediction file was missing."""

    result: dict
    n_images: int
    missing: list[str] = field(default_factory=list)


def score_culane_files(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    list_path: str | os.PathLike,
    iou_thresholds: Sequence[float] = (0.5,),
    evaluator: str = "python",
    img_size: tuple[int, int] = CULANE_IMG_SIZE,
    width: int = CULANE_LANE_WIDTH,
) -> CULaneFileScore:
    """Score the ``.lines.txt`` predictions of every image in ``list_path`` against the GT.

    ``result`` has the structure of ``CULaneMetric.compute()`` (without categories).
    """
    check_evaluator(evaluator)
    names = read_culane_list(list_path)
    counts = np.zeros((len(iou_thresholds), 3), dtype=np.int64)
    missing = []
    for name in names:
        rel = culane_label_name(name)
        gt_path = Path(gt_dir) / rel
        if not gt_path.is_file():
            raise FileNotFoundError(f"GT label file missing: {gt_path}")
        gts = read_culane_lanes(gt_path, evaluator)
        pred_path = Path(pred_dir) / rel
        if pred_path.is_file():
            preds = read_culane_lanes(pred_path, evaluator)
        else:
            missing.append(name)
            preds = []
        counts += culane_image_counts(preds, gts, iou_thresholds, evaluator, img_size, width)
    return CULaneFileScore(culane_summary(counts, iou_thresholds), len(names), missing)


def culane_tool_output(result: dict) -> dict:
    """The command line tool's JSON: one entry per threshold key, plus "mean" with several
    thresholds (TP/FP/FN summed over thresholds, Precision/Recall/F1 averaged), as the
    reference's "mean" entry."""
    per_thr = {k: v for k, v in result.items() if isinstance(v, dict) and "TP" in v}
    out = dict(per_thr)
    if len(per_thr) > 1:
        out["mean"] = {
            "TP": sum(v["TP"] for v in per_thr.values()),
            "FP": sum(v["FP"] for v in per_thr.values()),
            "FN": sum(v["FN"] for v in per_thr.values()),
            "Precision": mean_of(v["Precision"] for v in per_thr.values()),
            "Recall": mean_of(v["Recall"] for v in per_thr.values()),
            "F1": mean_of(v["F1"] for v in per_thr.values()),
        }
    return out


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """Objects of a JSON Lines file (blank lines skipped)."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i + 1}: not valid JSON: {err}") from None
    return out


def score_tusimple_files(pred_path: str | os.PathLike, gt_path: str | os.PathLike) -> dict:
    """Score a TuSimple prediction file against a GT file: ``{"Accuracy", "FP", "FN", "F1"}``.

    Images are scored in prediction-file order (so the sums equal the benchmark's).
    """
    preds = read_json_lines(pred_path)
    gts = read_json_lines(gt_path)
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} GT images: need one per image")
    by_name = {}
    for gt in gts:
        if gt["raw_file"] in by_name:
            raise ValueError(f"GT file lists {gt['raw_file']} twice")
        by_name[gt["raw_file"]] = gt
    seen = set()
    accuracy = fp = fn = 0.0
    for pred in preds:
        if not all(k in pred for k in ("raw_file", "lanes", "run_time")):
            raise ValueError("every prediction needs raw_file, lanes and run_time")
        name = pred["raw_file"]
        if name not in by_name:
            raise ValueError(f"prediction for an image not in the GT file: {name}")
        if name in seen:
            raise ValueError(f"two predictions for {name}")
        seen.add(name)
        gt = by_name[name]
        try:
            a, p, n = tusimple_image_scores(
                pred["lanes"], gt["lanes"], gt["h_samples"], float(pred["run_time"])
            )
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        accuracy += a
        fp += p
        fn += n
    return tusimple_summary(accuracy, fp, fn, len(gts))
