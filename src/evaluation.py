"""The evaluation side of a run: decoded lanes -> the dataset's official metric, the official
prediction files, drawings, predictions for arbitrary images, and metrics.json.

``LaneEvaluator`` converts lanes exactly as the official prediction writers do (so the in-loop
numbers equal scoring the written files with scripts/evaluate.py) and feeds the torchmetrics
metric (summed across processes). ``evaluate`` runs one pass over a split on every rank;
``predict`` writes lanes for images without labels, ``predict_videos`` for the frames of videos
(an annotated video each); both take a detector (a batch -> lanes: ``torch_detector`` or the
ONNX Runtime model of src/export.py). Each rank writes its own part of a file
(``write_rank_part``); rank 0 merges the parts in dataset order (``merge_rank_parts``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from lightning.fabric import Fabric
from torch import Tensor, nn
from torch.utils.data import DataLoader

from src.config import EvalConfig
from src.data.pipeline import crop_and_resize, input_array
from src.data.video import VideoFrames, video_writer
from src.lane import Lane
from src.metrics import (
    CULANE_IMG_SIZE,
    CULaneMetric,
    TuSimpleMetric,
    culane_lane_points,
    tusimple_lane_xs,
    tusimple_record,
    write_culane_prediction,
    write_tusimple_predictions,
)
from src.progress import FrameProgress
from src.quantize import quantize_model
from src.visualize import draw_lanes

log = logging.getLogger(__name__)

TUSIMPLE_PREDICTIONS = "tusimple_predictions.json"
CULANE_PREDICTIONS = "culane_predictions"
PREDICTIONS_JSONL = "predictions.jsonl"
METRICS_JSON = "metrics.json"

# A collated batch ("img", "meta" with cut_height and ori_size) -> lanes per image.
Detector = Callable[[dict[str, Any]], list[list[Lane]]]


# ------------------------------------------------------------------- per-rank file parts
def _part_path(directory: Path, name: str, rank: int) -> Path:
    return directory / f".{name}.rank{rank}"


def write_rank_part(directory: Path, name: str, rank: int, rows: Iterable[tuple[int, str]]) -> None:
    """This rank's lines of the file ``name``, each with its dataset index, for merging."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(_part_path(directory, name, rank), "w") as f:
        for index, line in rows:
            f.write(f"{index}\t{line}\n")


def merge_rank_parts(directory: Path, name: str) -> list[str]:
    """Rank 0, after a barrier: every rank's lines of ``name`` in dataset order (the parts are
    removed)."""
    rows = []
    for part in sorted(directory.glob(f".{name}.rank*")):
        for row in part.read_text().splitlines():
            index, line = row.split("\t", 1)
            rows.append((int(index), line))
        part.unlink()
    return [line for _, line in sorted(rows, key=lambda r: r[0])]


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


class FrozenCompiledModel(nn.Module):
    """A trained model for inference only (evaluation.compile): its forward runs through
    torch.compile with inductor freezing, which treats the weights as constants: BatchNorm is
    folded into the convolutions and the weights are prepacked (and cast to bf16 once under bf16
    autocast) instead of at every call. Decoding is the model's own. The weights must not change
    afterwards, hence not for the validations inside training."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = getattr(model, "_orig_mod", model)  # trainer.compile wraps it already
        # Kept out of the module tree so that state_dict and .to() see the model once.
        object.__setattr__(self, "_compiled", torch.compile(self.model, dynamic=False))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        # Read when a shape compiles (the first call of each batch size).
        with inductor_config.patch(freezing=True):
            return self._compiled(img)

    def decode(self, *args: Any, **kwargs: Any) -> list[list[Lane]]:
        return self.model.decode(*args, **kwargs)


def inference_model(
    model: nn.Module, compile: bool, int8_calibration: Iterable[Tensor] | None = None
) -> nn.Module:
    """The eval-mode model evaluation and prediction run (``compile``: FrozenCompiledModel;
    ``int8_calibration`` image batches: its forward in int8 first, src/quantize.py)."""
    model.eval()
    if int8_calibration is not None:
        log.info("evaluation.int8: calibrating the int8 model, then compiling it")
        return FrozenCompiledModel(quantize_model(model, int8_calibration)).eval()
    if compile:
        log.info("evaluation.compile: torch.compile with freezing (the first batch compiles)")
        return FrozenCompiledModel(model).eval()
    return model


def torch_detector(fabric: Fabric, model: nn.Module) -> Detector:
    """The model in eval mode as a detector (forward under the run's precision, decode)."""
    model.eval()

    @torch.no_grad()
    def detector(batch: dict[str, Any]) -> list[list[Lane]]:
        # Video frames come as CPU tensors (loader batches are on the device already).
        return detect(fabric, model, {**batch, "img": fabric.to_device(batch["img"])})

    return detector


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


def predict(
    fabric: Fabric, detector: Detector, loader: DataLoader, out_dir: Path, draw: bool
) -> Path:
    """Lanes for arbitrary images: JSON Lines (pixels of the original image, one row per image
    in input order; an unreadable image skipped under dataset.skip_unreadable_images has a
    "skipped" reason instead of lanes) + drawings."""
    rows, skipped = [], 0
    for batch in loader:
        lanes = detector(batch)
        for image_lanes, meta in zip(lanes, batch["meta"], strict=True):
            if meta.get("skipped"):  # unreadable, with dataset.skip_unreadable_images: listed
                skipped += 1
                record = {"image": meta["img_path"], "skipped": meta["skip_reason"]}
                rows.append((meta["index"], json.dumps(record)))
                continue
            ori_h, ori_w = meta["ori_size"]
            pixels = [lane.to_pixels(ori_w, ori_h) for lane in image_lanes]
            record = {
                "image": meta["img_path"],
                "lanes": [p.round(2).tolist() for p in pixels],
                "scores": [round(float(lane.score or 0.0), 4) for lane in image_lanes],
            }
            rows.append((meta["index"], json.dumps(record)))
            if draw:
                out_dir.mkdir(parents=True, exist_ok=True)
                image = cv2.imread(meta["img_path"], cv2.IMREAD_COLOR)
                name = meta["img_name"].replace("/", "_")
                cv2.imwrite(str(out_dir / name), draw_lanes(image, pixels))
    if skipped:
        log.warning('%d unreadable image(s) skipped: listed with a "skipped" reason', skipped)
    write_rank_part(out_dir, PREDICTIONS_JSONL, fabric.global_rank, rows)
    fabric.barrier()
    out = out_dir / PREDICTIONS_JSONL
    if fabric.is_global_zero:
        lines = merge_rank_parts(out_dir, PREDICTIONS_JSONL)
        out.write_text("".join(line + "\n" for line in lines))
        log.info("predictions for %d images written to %s", len(lines), out)
    return out


def predict_videos(
    detector: Detector,
    videos: Sequence[Path],
    out_dir: Path,
    cut_height: int,
    input_size: tuple[int, int],
    batch_size: int,
    draw: bool,
    progress: bool = True,
) -> Path:
    """Lanes for every frame of each video: ``predictions.jsonl`` with one row per frame
    ({"video", "frame", "lanes" in original pixels, "scores"}, in order) and, with ``draw``, an
    annotated ``<video name>.mp4`` (same fps and size). One process: frames are sequential."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / PREDICTIONS_JSONL
    names = _video_names(videos)
    with open(out, "w") as jsonl:
        for path in videos:
            frames = VideoFrames(path)
            writer = None
            if draw:
                name = str(Path(names[path]).with_suffix(".mp4")).replace("/", "_")
                writer = video_writer(out_dir / name, frames.fps, frames.width, frames.height)
            bar = FrameProgress(path.name, frames.frame_count, enabled=progress)
            start, count = time.perf_counter(), 0
            try:
                for chunk in _chunks(frames, batch_size):
                    lanes = detector(_frame_batch(chunk, cut_height, input_size, path))
                    for frame, image_lanes in zip(chunk, lanes, strict=True):
                        pixels = [
                            lane.to_pixels(frame.shape[1], frame.shape[0]) for lane in image_lanes
                        ]
                        record = {
                            "video": names[path],
                            "frame": count,
                            "lanes": [p.round(2).tolist() for p in pixels],
                            "scores": [round(float(lane.score or 0.0), 4) for lane in image_lanes],
                        }
                        jsonl.write(json.dumps(record) + "\n")
                        if writer is not None:
                            writer.write(draw_lanes(frame, pixels))
                        count += 1
                    bar.update(count, count / max(time.perf_counter() - start, 1e-9))
            finally:
                bar.stop()
                if writer is not None:
                    writer.release()
            seconds = time.perf_counter() - start
            log.info(
                "%s: %d frames in %.1f s (%.1f frames/s)",
                path,
                count,
                seconds,
                count / max(seconds, 1e-9),
            )
    log.info("predictions for %d video(s) written to %s", len(videos), out)
    return out


def _video_names(videos: Sequence[Path]) -> dict[Path, str]:
    """Each video's name in the outputs: its path under the videos' common folder."""
    if len(videos) == 1:
        return {videos[0]: videos[0].name}
    common = Path(os.path.commonpath([v.parent for v in videos]))
    return {v: str(v.relative_to(common)) for v in videos}


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterable[list[np.ndarray]]:
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _frame_batch(
    frames: Sequence[np.ndarray], cut_height: int, input_size: tuple[int, int], path: Path
) -> dict[str, Any]:
    """Frames as a collated batch, preprocessed exactly as images are for prediction."""
    height, width = frames[0].shape[:2]
    if height <= cut_height:
        raise ValueError(f"{path}: frames of {height} rows, not more than cut_height={cut_height}")
    inputs = [input_array(crop_and_resize(f, cut_height, *input_size)) for f in frames]
    meta = {"cut_height": cut_height, "ori_size": (height, width)}
    return {"img": torch.from_numpy(np.stack(inputs)), "meta": [dict(meta) for _ in frames]}


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


# ------------------------------------------------------------------------ metrics.json
def update_metrics_json(run_dir: Path, entries: dict[str, Any]) -> None:
    """Merge ``entries`` into the run's metrics.json (training summary, validate, test results
    live side by side), written atomically."""
    path = run_dir / METRICS_JSON
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(entries)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)
    log.info("metrics written to %s", path)


def format_metrics(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
