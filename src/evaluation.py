"""The evaluator: decoded lanes + sample metadata -> the dataset's official metric and files.

It converts lanes exactly as the official prediction writers do (so the in-loop numbers equal
scoring the written files with scripts/evaluate.py), feeds the torchmetrics metric (summed
across processes), and optionally writes the official prediction files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src.config import EvalConfig
from src.lane import Lane
from src.metrics import (
    CULaneMetric,
    TuSimpleMetric,
    culane_lane_points,
    tusimple_lane_xs,
    write_culane_prediction,
)

TUSIMPLE_PREDICTIONS = "tusimple_predictions.json"
CULANE_PREDICTIONS = "culane_predictions"


class LaneEvaluator:
    """Scores one pass over a split. ``headline`` names the metric used for model selection."""

    def __init__(
        self,
        dataset_name: str,
        cfg: EvalConfig,
        categories: Sequence[str] | None = None,
        prediction_dir: Path | None = None,
        rank: int = 0,
    ) -> None:
        self.tusimple_format = dataset_name in ("tusimple", "synthetic")
        self.cfg = cfg
        self.prediction_dir = prediction_dir
        self.rank = rank
        self._tusimple_lines: list[tuple[int, str]] = []
        self.skipped = 0  # unreadable images (not scored)
        if self.tusimple_format:
            self.metric: Any = TuSimpleMetric()
        else:
            self.metric = CULaneMetric(
                iou_thresholds=tuple(cfg.culane_iou_thresholds),
                evaluator=cfg.culane_evaluator,
                categories=categories,
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
                line = json.dumps({"raw_file": meta["img_name"], "lanes": xs, "run_time": run_time})
                self._tusimple_lines.append((meta["index"], line))

    def _update_culane(
        self, lanes: Sequence[Sequence[Lane]], metas: Sequence[dict[str, Any]]
    ) -> None:
        preds = []
        for image_lanes, meta in zip(lanes, metas, strict=True):
            ori_h, ori_w = meta["ori_size"]
            points = culane_lane_points(list(image_lanes), ori_w, ori_h, meta["cut_height"])
            preds.append(points)
            if self.prediction_dir is not None:
                write_culane_prediction(
                    self.prediction_dir / CULANE_PREDICTIONS, meta["img_name"], points
                )
        gts = [[np.asarray(lane, dtype=np.float64) for lane in m["lanes"]] for m in metas]
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
        if self.prediction_dir is None or not self.tusimple_format:
            return
        self.prediction_dir.mkdir(parents=True, exist_ok=True)
        part = self.prediction_dir / f".{TUSIMPLE_PREDICTIONS}.rank{self.rank}"
        with open(part, "w") as f:
            for index, line in self._tusimple_lines:
                f.write(f"{index}\t{line}\n")

    def merge_rank_parts(self) -> Path | None:
        """Rank 0, after a barrier: one TuSimple JSON Lines file in dataset order."""
        if self.prediction_dir is None or not self.tusimple_format:
            return self.prediction_dir / CULANE_PREDICTIONS if self.prediction_dir else None
        parts = sorted(self.prediction_dir.glob(f".{TUSIMPLE_PREDICTIONS}.rank*"))
        lines = []
        for part in parts:
            for row in part.read_text().splitlines():
                index, line = row.split("\t", 1)
                lines.append((int(index), line))
            part.unlink()
        out = self.prediction_dir / TUSIMPLE_PREDICTIONS
        out.write_text("".join(line + "\n" for _, line in sorted(lines)))
        return out


def _to_builtin(value: Any) -> Any:
    """Tensors / numpy scalars inside a metric result -> plain floats, for JSON."""
    if isinstance(value, dict):
        return {str(k): _to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_builtin(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
