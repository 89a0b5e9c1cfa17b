"""Benchmark the training data pipeline: read + crop + augment + targets, per sample per core.

Writes a small CULane-format tree of 1640x590 JPEGs with 4 lanes each (road images from the
synthetic renderer, so the JPEGs have realistic detail and size), builds the CULane training
dataset on it (augmentation on) and times ``dataset[(epoch, index)]`` in one process with
OpenCV and torch limited to one thread. Prints ms per sample per core (CPU time; wall time
too), samples per second per core, and the ratio to the reference pipeline's 26.4 ms.

    python scripts/bench_data.py [--samples 400] [--images 24] [--quality 95]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from src.data import build_dataset
from src.data.config import DatasetConfig
from src.data.pipeline import read_image
from src.data.synthetic_scene import SceneTextures, render_scene

REFERENCE_MS = 26.4  # reference SRLane (imgaug) pipeline on this machine, per sample per core
WIDTH, HEIGHT, LANES = 1640, 590, 4


def write_culane_tree(root: Path, images: int, quality: int, seed: int = 0) -> float:
    """CULane tree with ``images`` 4-lane JPEGs; returns the mean JPEG size in kB."""
    textures = SceneTextures.create(WIDTH, HEIGHT, seed)
    names, sizes, attempt = [], [], 0
    while len(names) < images:
        scene = render_scene(np.random.default_rng([seed, attempt]), WIDTH, HEIGHT, textures)
        attempt += 1
        if len(scene.lanes) != LANES:
            continue
        name = f"driver_bench/clip.MP4/{len(names):05d}.jpg"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, data = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        path.write_bytes(data.tobytes())
        sizes.append(len(data))
        lines = []
        for xs in scene.lanes:  # CULane: bottom-up x y pairs
            points = [(x, y) for x, y in zip(xs, scene.h_samples, strict=True) if x >= 0]
            lines.append(" ".join(f"{x:.3f} {y:.3f}" for x, y in reversed(points)))
        path.with_suffix(".lines.txt").write_text("\n".join(lines) + "\n")
        names.append(name)
    (root / "list").mkdir(exist_ok=True)
    (root / "list" / "train_gt.txt").write_text(
        "".join(f"/{n} /laneseg/{n[:-3]}png 1 1 1 1\n" for n in names)
    )
    return float(np.mean(sizes)) / 1e3


def timed(fn: Callable[[int], object], count: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of fn(i) over i < count."""
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(count):
        fn(i)
    return (
        (time.process_time() - cpu) / count * 1e3,
        (time.perf_counter() - wall) / count * 1e3,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="samples timed")
    parser.add_argument("--images", type=int, default=24, help="distinct JPEGs written")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the images")
    args = parser.parse_args()

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-culane-") as tmp:
        root = Path(tmp)
        kb = write_culane_tree(root, args.images, args.quality)
        cfg = DatasetConfig(
            name="culane",
            root=str(root),
            ori_w=WIDTH,
            ori_h=HEIGHT,
            cut_height=270,
            img_w=800,
            img_h=320,
            max_lanes=4,
        )
        dataset = build_dataset(cfg, "train", training=True, seed=0)
        n = len(dataset)
        for i in range(n):  # warm the page cache and OpenCV
            dataset[(0, i)]
        full_cpu, full_wall = timed(lambda i: dataset[(1 + i // n, i % n)], args.samples)
        paths = [s.img_path for s in dataset.samples]
        read_cpu, read_wall = timed(lambda i: read_image(paths[i % n]), args.samples)
        images = [read_image(p) for p in paths]
        lanes = [s.load_lanes()[1] for s in dataset.samples]
        pipe = dataset.pipeline

        def augment_only(i: int) -> None:
            draw = pipe.draw(np.random.default_rng([0, 1, i]))
            pipe.process(images[i % n], lanes[i % n], draw)

        aug_cpu, aug_wall = timed(augment_only, args.samples)

    print(
        f"{args.samples} samples, {n} distinct {WIDTH}x{HEIGHT} JPEGs with {LANES} lanes "
        f"(quality {args.quality}, mean {kb:.0f} kB), 800x320 output, one thread, "
        f"os.cpu_count()={os.cpu_count()}"
    )
    print(
        f"  read + crop + augment + targets + tensor: {full_cpu:6.2f} ms/sample/core CPU "
        f"({full_wall:.2f} ms wall)"
    )
    print(
        f"    of which JPEG read/decode:              {read_cpu:6.2f} ms CPU ({read_wall:.2f} wall)"
    )
    print(
        f"    of which crop + augment + targets:      {aug_cpu:6.2f} ms CPU ({aug_wall:.2f} wall)"
    )
    print(f"  samples/s/core: {1e3 / full_cpu:.1f}")
    print(
        f"  reference pipeline: {REFERENCE_MS} ms/sample/core -> speed-up "
        f"{REFERENCE_MS / full_cpu:.2f}x (goal >= 2x)"
    )


if __name__ == "__main__":
    main()
