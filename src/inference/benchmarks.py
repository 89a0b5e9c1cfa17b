"""Each benchmark's side of scoring: its metric, how decoded lanes become its official
prediction format (the same conversion its writer uses, so in-loop numbers equal scoring the
written files with scripts/evaluate.py), its prediction files, and its headline numbers.

``benchmark_for(dataset name)`` picks one; ``LaneEvaluator`` (src/inference/evaluate.py) drives
it. A new benchmark: its metric and writers in src/metrics/, a class here, a line in
``BENCHMARKS`` and in ``FORMAT_OF``.
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
    CULANE_IMG_SIZE,
    CULaneMetric,
    CurveLanesMetric,
    LLAMASMetric,
    TuSimpleMetric,
    culane_lane_points,
    curvelanes_lane_points,
    llamas_lane_points,
    tusimple_lane_xs,
    tusimple_record,
    write_culane_prediction,
    write_curvelanes_prediction,
    write_llamas_prediction,
    write_tusimple_predictions,
)
from src.run_dir import merge_rank_parts, write_rank_part

Lanes = Sequence[Sequence[Lane]]
Metas = Sequence[dict[str, Any]]

# dataset.name -> the benchmark format its files and metric follow.
FORMAT_OF = {
    "tusimple": "tusimple",
    "synthetic": "tusimple",
    "culane": "culane",
    "custom": "culane",
    "llamas": "llamas",
    "llamas_synthetic": "llamas",
    "curvelanes": "curvelanes",
    "curvelanes_synthetic": "curvelanes",
}


class TuSimpleBenchmark:
    """The TuSimple metric (Accuracy, FP, FN, F1) and one predictions JSON file."""

    FILE = "tusimple_predictions.json"

    def __init__(self, cfg: EvalConfig, **_: Any) -> None:
        self.cfg = cfg
        self.metric: Any = TuSimpleMetric()
        self._lines: list[tuple[int, str]] = []  # this rank's prediction lines

    def update(self, lanes: Lanes, metas: Metas, run_times_ms: Sequence[float], out: Path | None):
        fixed = self.cfg.tusimple_run_time_ms
        run_times = [fixed if fixed is not None else t for t in run_times_ms]
        pred_xs = [
            tusimple_lane_xs(list(image), m["h_samples"], m["ori_size"][1], m["ori_size"][0])
            for image, m in zip(lanes, metas, strict=True)
        ]
        gt_xs, rows = [m["gt_xs"] for m in metas], [m["h_samples"] for m in metas]
        self.metric.update(pred_xs, gt_xs, rows, run_times)
        if out is not None:
            for xs, meta, run_time in zip(pred_xs, metas, run_times, strict=True):
                self._lines.append((meta["index"], tusimple_record(meta["img_name"], xs, run_time)))

    def headline(self, result: dict) -> dict[str, float]:
        return {k: float(result[k]) for k in ("Accuracy", "FP", "FN", "F1")}

    def write_rank_part(self, out: Path, rank: int) -> None:
        write_rank_part(out, self.FILE, rank, self._lines)

    def merge_rank_parts(self, out: Path) -> None:
        records = [json.loads(line) for line in merge_rank_parts(out, self.FILE)]
        write_tusimple_predictions(out / self.FILE, records)


class CULaneBenchmark:
    """The CULane metric at evaluation.culane_iou_thresholds, per category on the test split,
    on the dataset's ori_h x ori_w canvas; one .lines.txt per image."""

    DIR = "culane_predictions"

    def __init__(self, cfg: EvalConfig, categories: Sequence[str] | None, img_size: Any) -> None:
        self.thresholds = [str(t) for t in cfg.culane_iou_thresholds]
        self.metric: Any = self.make_metric(cfg, categories, img_size)

    def make_metric(self, cfg: EvalConfig, categories: Any, img_size: Any) -> Any:
        return CULaneMetric(
            iou_thresholds=tuple(cfg.culane_iou_thresholds),
            evaluator=cfg.culane_evaluator,
            categories=categories,
            img_size=img_size or CULANE_IMG_SIZE,
        )

    def points(self, image: Sequence[Lane], meta: dict[str, Any]) -> list[np.ndarray]:
        ori_h, ori_w = meta["ori_size"]
        return culane_lane_points(list(image), ori_w, ori_h, meta["cut_height"])

    def write(self, out: Path, img_name: str, points: list[np.ndarray]) -> None:
        write_culane_prediction(out / self.DIR, img_name, points)

    def update(self, lanes: Lanes, metas: Metas, run_times_ms: Sequence[float], out: Path | None):
        preds = [self.points(image, meta) for image, meta in zip(lanes, metas, strict=True)]
        if out is not None:
            for points, meta in zip(preds, metas, strict=True):
                self.write(out, meta["img_name"], points)
        gts = [[np.asarray(lane, dtype=np.float64) for lane in m["lanes"]] for m in metas]
        self.feed(preds, gts, metas)

    def feed(self, preds: list, gts: list, metas: Metas) -> None:
        categories = [m.get("category") for m in metas]
        self.metric.update(preds, gts, categories if any(categories) else None)

    def headline(self, result: dict) -> dict[str, float]:
        head = result[self.thresholds[0]]
        flat = {k: float(head[k]) for k in ("F1", "Precision", "Recall")}
        for t in self.thresholds[1:]:
            flat[f"F1@{t}"] = float(result[t]["F1"])
        if "mF1" in result:
            flat["mF1"] = float(result["mF1"])
        return flat

    def write_rank_part(self, out: Path, rank: int) -> None:
        pass  # one file per image, written as it comes

    def merge_rank_parts(self, out: Path) -> None:
        pass


class LLAMASBenchmark(CULaneBenchmark):
    """The LLAMAS lane metric (30-px lanes on 717x1276, GT rows from 300 down); one .lines.txt
    per image at <recording>/<name>.lines.txt, rows 300..716 as CLRNet writes them."""

    DIR = "llamas_predictions"

    def make_metric(self, cfg: EvalConfig, categories: Any, img_size: Any) -> Any:
        return LLAMASMetric(iou_thresholds=tuple(cfg.culane_iou_thresholds))

    def points(self, image: Sequence[Lane], meta: dict[str, Any]) -> list[np.ndarray]:
        ori_h, ori_w = meta["ori_size"]
        return llamas_lane_points(list(image), ori_w, ori_h)

    def write(self, out: Path, img_name: str, points: list[np.ndarray]) -> None:
        write_llamas_prediction(out / self.DIR, img_name, points)

    def feed(self, preds: list, gts: list, metas: Metas) -> None:
        self.metric.update(preds, gts)


class CurveLanesBenchmark(CULaneBenchmark):
    """CondLaneNet's CurveLanes metric (each image on a 224x224 canvas, 5-px lanes); one
    .lines.txt per image in original pixels at images/<md5>.lines.txt."""

    DIR = "curvelanes_predictions"

    def make_metric(self, cfg: EvalConfig, categories: Any, img_size: Any) -> Any:
        return CurveLanesMetric(iou_thresholds=tuple(cfg.culane_iou_thresholds))

    def points(self, image: Sequence[Lane], meta: dict[str, Any]) -> list[np.ndarray]:
        ori_h, ori_w = meta["ori_size"]
        return curvelanes_lane_points(list(image), ori_w, ori_h, meta["cut_height"])

    def write(self, out: Path, img_name: str, points: list[np.ndarray]) -> None:
        write_curvelanes_prediction(out / self.DIR, img_name, points)

    def feed(self, preds: list, gts: list, metas: Metas) -> None:
        self.metric.update(preds, gts, [m["ori_size"] for m in metas])


BENCHMARKS = {
    "tusimple": TuSimpleBenchmark,
    "culane": CULaneBenchmark,
    "llamas": LLAMASBenchmark,
    "curvelanes": CurveLanesBenchmark,
}


def benchmark_for(
    dataset_name: str,
    cfg: EvalConfig,
    categories: Sequence[str] | None = None,
    img_size: tuple[int, int] | None = None,
) -> Any:
    """The benchmark the dataset ``dataset_name`` is scored with."""
    if dataset_name not in FORMAT_OF:
        raise ValueError(f"no benchmark for dataset.name={dataset_name!r}: {sorted(FORMAT_OF)}")
    return BENCHMARKS[FORMAT_OF[dataset_name]](cfg, categories=categories, img_size=img_size)
