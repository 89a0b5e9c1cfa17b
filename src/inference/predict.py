"""Lanes for images without labels and for the frames of videos (mode=predict).

Both take a detector (a collated batch -> lanes per image): ``torch_detector`` (the model, its
precision and decoding) or the ONNX Runtime model of src/inference/export.py. Images: one JSON
line per image, in input order, from every rank's shard; videos: one process reads frames in
order and writes an annotated copy.
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
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.data import DataLoader

from src.data.pipeline import crop_and_resize, input_array
from src.data.video import VideoFrames, video_writer
from src.inference.drawing import draw_lanes
from src.inference.evaluate import detect
from src.lane import Lane
from src.run_dir import merge_rank_parts, write_rank_part

log = logging.getLogger(__name__)

PREDICTIONS_JSONL = "predictions.jsonl"


# A collated batch ("img", "meta" with cut_height and ori_size) -> lanes per image.
Detector = Callable[[dict[str, Any]], list[list[Lane]]]


def torch_detector(fabric: Fabric, model: nn.Module) -> Detector:
    """The model in eval mode as a detector (forward under the run's precision, decode)."""
    model.eval()

    @torch.no_grad()
    def detector(batch: dict[str, Any]) -> list[list[Lane]]:
        # Video frames come as CPU tensors (loader batches are on the device already).
        return detect(fabric, model, {**batch, "img": fabric.to_device(batch["img"])})

    return detector


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


class FrameProgress:
    """A progress bar over the frames of a video with frames/s; a no-op without a terminal."""

    def __init__(self, name: str, total: int | None, enabled: bool = True) -> None:
        console = Console(stderr=True)
        self._progress: Progress | None = None
        if not (enabled and console.is_terminal):
            return
        self._progress = Progress(
            TextColumn(f"[bold]{name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[fps]} frames/s"),
            console=console,
        )
        self._task = self._progress.add_task(name, total=total or None, fps="-")
        self._progress.start()

    def update(self, frames: int, fps: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=frames, fps=f"{fps:.1f}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
