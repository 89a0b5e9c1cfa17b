"""Scoring a split: decoded lanes -> the dataset's official metric, the official prediction files
and drawings.

``LaneEvaluator`` converts lanes exactly as the official prediction writers do (so the in-loop
numbers equal scoring the written files with scripts/evaluate.py) and feeds the torchmetrics
metric (summed across processes). ``evaluate`` runs one pass over a split on every rank; each rank
writes its part of a prediction file, rank 0 merges them in dataset order (src/run_dir.py).
Predicting images without labels and videos: src/inference/predict.py; the compiled and int8
models: src/inference/compiled.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader

from src.config import EvalConfig
from src.inference.drawing import draw_lanes
from src.lane import Lane
from src.metrics import (
    CULANE_IMG_SIZE,
    CULaneMetric,
    LLAMASMetric,
    TuSimpleMetric,
    culane_lane_points,
    llamas_lane_points,
    tusimple_lane_xs,
    tusimple_record,
    write_culane_prediction,
    write_llamas_prediction,
    write_tusimple_predictions,
)
from src.run_dir import merge_rank_parts, write_rank_part

log = logging.getLogger(__name__)

TUSIMPLE_PREDICTIONS = "tusimple_predictions.json"
CULANE_PREDICTIONS = "culane_predictions"
LLAMAS_PREDICTIONS = "llamas_predictions"


class LaneEvaluator:
    """Scores one pass over a split. ``headline`` names the metric used for model selection."""

    def __init__(
        self,
        dataset_name: str,
        cfg: EvalConfig,
        categories: Sequence[str] | None = None,
        prediction_dir: Path | None = None,
        rank: int = 0,
        img_size: tuple[int, int] = CULANE_IMG_SIZE,
    ) -> None:
        """``img_size``: (height, width) of the dataset's images, the canvas CULane lanes are
        drawn on (the dataset's ori_h x ori_w)."""
        self.tusimple_format = dataset_name in ("tusimple", "synthetic")
        # LLAMAS: CULane-style files and IoU, its ground truth drawn without a spline.
        self.llamas_format = dataset_name == "llamas"
        self.cfg = cfg
        self.prediction_dir = prediction_dir
        self.rank = rank
        self._tusimple_lines: list[tuple[int, str]] = []
        self.skipped = 0  # unreadable images (not scored)
        if self.tusimple_format:
            self.metric: Any = TuSimpleMetric()
        elif self.llamas_format:
            self.metric = LLAMASMetric(iou_thresholds=tuple(cfg.culane_iou_thresholds))
        else:
            self.metric = CULaneMetric(
                iou_thresholds=tuple(cfg.culane_iou_thresholds),
                evaluator=cfg.culane_evaluator,
                categories=categories,
                img_size=img_size,
            )
        self.headline = "F1"

    def update(
        self,
        lanes: Sequence[Sequence[Lane]],
        metas: Sequence[dict[str, Any]],
        run_times_ms: Sequence[float],
    ) -> None:
        # With dataset.skip_unreadable_images, an unreadable image's slot holds another sample
        # (meta "replaces"); that sample is scored in its own slot, so this copy is dropped.
        keep = [i for i, meta in enumerate(metas) if not meta.get("replaces")]
        self.skipped += len(metas) - len(keep)
        if len(keep) < len(metas):
            lanes = [lanes[i] for i in keep]
            metas = [metas[i] for i in keep]
            run_times_ms = [run_times_ms[i] for i in keep]
        if self.tusimple_format:
            self._update_tusimple(lanes, metas, run_times_ms)
        else:
            self._update_culane(lanes, metas)

    def _update_tusimple(
        self,
        lanes: Sequence[Sequence[Lane]],
        metas: Sequence[dict[str, Any]],
        run_times_ms: Sequence[float],
    ) -> None:
        fixed = self.cfg.tusimple_run_time_ms
        run_times = [fixed if fixed is not None else t for t in run_times_ms]
        pred_xs = []
        for image_lanes, meta in zip(lanes, metas, strict=True):
            ori_h, ori_w = meta["ori_size"]
            xs = tusimple_lane_xs(list(image_lanes), meta["h_samples"], ori_w, ori_h)
            pred_xs.append(xs)
        self.metric.update(
            pred_xs,
            [m["gt_xs"] for m in metas],
            [m["h_samples"] for m in metas],
            run_times,
        )
        if self.prediction_dir is not None:
            for xs, meta, run_time in zip(pred_xs, metas, run_times, strict=True):
                line = tusimple_record(meta["img_name"], xs, run_time)
                self._tusimple_lines.append((meta["index"], line))

    def _update_culane(
        self, lanes: Sequence[Sequence[Lane]], metas: Sequence[dict[str, Any]]
    ) -> None:
        preds = []
        for image_lanes, meta in zip(lanes, metas, strict=True):
            ori_h, ori_w = meta["ori_size"]
            if self.llamas_format:
                points = llamas_lane_points(list(image_lanes), ori_w, ori_h)
                write, folder = write_llamas_prediction, LLAMAS_PREDICTIONS
            else:
                points = culane_lane_points(list(image_lanes), ori_w, ori_h, meta["cut_height"])
                write, folder = write_culane_prediction, CULANE_PREDICTIONS
            preds.append(points)
            if self.prediction_dir is not None:
                write(self.prediction_dir / folder, meta["img_name"], points)
        gts = [[np.asarray(lane, dtype=np.float64) for lane in m["lanes"]] for m in metas]
        if self.llamas_format:
            self.metric.update(preds, gts)
            return
        categories = [m.get("category") for m in metas]
        self.metric.update(preds, gts, categories if any(categories) else None)

    def compute(self) -> dict[str, Any]:
        """The metric over every process's updates: a flat dict of floats for logging, with the
        full structured result under "details"."""
        result = self.metric.compute()
        if self.tusimple_format:
            flat = {k: float(result[k]) for k in ("Accuracy", "FP", "FN", "F1")}
        else:
            thresholds = [str(t) for t in self.cfg.culane_iou_thresholds]
            head = result[thresholds[0]]
            flat = {k: float(head[k]) for k in ("F1", "Precision", "Recall")}
            for t in thresholds[1:]:
                flat[f"F1@{t}"] = float(result[t]["F1"])
            if "mF1" in result:
                flat["mF1"] = float(result["mF1"])
        flat["details"] = _to_builtin(result)
        return flat

    def write_rank_part(self) -> None:
        """TuSimple: this rank's prediction lines (with dataset indices) for merging."""
        if self.prediction_dir is not None and self.tusimple_format:
            write_rank_part(
                self.prediction_dir, TUSIMPLE_PREDICTIONS, self.rank, self._tusimple_lines
            )

    def merge_rank_parts(self) -> None:
        """Rank 0, after a barrier: one TuSimple prediction file in dataset order (CULane files
        are written per image as they come)."""
        if self.prediction_dir is not None and self.tusimple_format:
            lines = merge_rank_parts(self.prediction_dir, TUSIMPLE_PREDICTIONS)
            records = [json.loads(line) for line in lines]
            write_tusimple_predictions(self.prediction_dir / TUSIMPLE_PREDICTIONS, records)


def _to_builtin(value: Any) -> Any:
    """Tensors / numpy scalars inside a metric result -> plain floats, for JSON."""
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


# ------------------------------------------------------------------------- model passes
def detect(fabric: Fabric, model: nn.Module, batch: dict[str, Any]) -> list[list[Lane]]:
    """Forward (under the run's precision) and decode to lanes in original-image space."""
    with fabric.autocast():
        predictions = model(batch["img"])
    metas = batch["meta"]
    return model.decode(
        predictions.float(), [m["cut_height"] for m in metas], [m["ori_size"][0] for m in metas]
    )


@torch.no_grad()
def evaluate(
    fabric: Fabric,
    model: nn.Module,
    loader: DataLoader,
    evaluator: LaneEvaluator,
    limit_batches: int = 0,
    draw_dir: Path | None = None,
    num_draw: int = 0,
) -> dict[str, Any]:
    """One pass over a split on every rank (disjoint shards); the metric is summed across ranks.
    ``model`` is the plain module, not the DDP wrapper, so ranks need not step together.
    Draws the first ``num_draw`` images (rank 0) into ``draw_dir``."""
    model.eval()
    to_draw = num_draw if fabric.is_global_zero and draw_dir is not None else 0
    for index, batch in enumerate(loader):
        if limit_batches and index >= limit_batches:
            break
        start = time.perf_counter()
        lanes = detect(fabric, model, batch)
        metas = batch["meta"]
        per_image_ms = (time.perf_counter() - start) * 1000.0 / len(metas)
        evaluator.update(lanes, metas, [per_image_ms] * len(metas))
        if to_draw > 0:
            to_draw -= _draw_samples(draw_dir, lanes, metas, to_draw)
    evaluator.write_rank_part()
    if evaluator.skipped:
        log.warning("%d unreadable image(s) were not scored", evaluator.skipped)
    metrics = evaluator.compute()
    fabric.barrier()
    if fabric.is_global_zero:
        evaluator.merge_rank_parts()
    return metrics


def _draw_samples(
    draw_dir: Path, lanes: Sequence[Sequence[Lane]], metas: Sequence[dict[str, Any]], limit: int
) -> int:
    """Save up to ``limit`` images with predicted (red) and true (green) lanes; returns count."""
    draw_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for image_lanes, meta in zip(lanes, metas, strict=True):
        if count >= limit:
            break
        image = cv2.imread(meta["img_path"], cv2.IMREAD_COLOR)
        if image is None:
            continue
        ori_h, ori_w = meta["ori_size"]
        pred = [lane.to_pixels(ori_w, ori_h) for lane in image_lanes]
        name = meta["img_name"].replace("/", "_")
        cv2.imwrite(str(draw_dir / name), draw_lanes(image, pred, meta["lanes"]))
        count += 1
    return count


def format_metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
