"""Writers of small real-format TuSimple and CULane trees for the data tests.

Images are dark with the labelled lanes painted white, so tests can check that lanes and
pixels stay together through the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from src.data.config import DatasetConfig
from src.models.srlane import PLUGIN as SRLANE

TUSIMPLE_ROWS = list(range(160, 720, 10))

# The training targets of the default model, for dataset items that carry them.
SRLANE_TARGETS = SRLANE.training_targets


def lane_image(
    width: int, height: int, lanes: list[np.ndarray], thickness: int = 9, background: int = 40
) -> np.ndarray:
    """Grey BGR image with each lane (N, 2 points in continuous pixel coordinates) drawn as a
    white polyline."""
    image = np.full((height, width, 3), background, dtype=np.uint8)
    for lane in lanes:
        if len(lane) >= 2:
            # OpenCV draws in pixel-centre coordinates: continuous x = pixel + 0.5.
            pts = np.round((np.asarray(lane) - 0.5) * 16).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], False, (255, 255, 255), thickness, cv2.LINE_AA, 4)
    return image


def write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    path.write_bytes(data.tobytes())


def tusimple_xs(rng: np.random.Generator, n_lanes: int, width: int = 1280) -> list[list[int]]:
    """Plausible TuSimple lanes: straight lines from a vanishing area, -2 above their top."""
    lanes = []
    for k in range(n_lanes):
        top = int(rng.integers(240, 320))
        x_top = 600 + rng.uniform(-40, 40) + 20 * k
        x_bottom = -300 + k * (width + 600) / max(n_lanes - 1, 1) + rng.uniform(-60, 60)
        xs = []
        for y in TUSIMPLE_ROWS:
            if y < top:
                xs.append(-2)
                continue
            x = x_top + (x_bottom - x_top) * (y - top) / (710 - top)
            xs.append(int(round(x)) if 0 <= x < width else -2)
        lanes.append(xs)
    return lanes


def write_tusimple_tree(
    root: Path, per_file: int = 2, seed: int = 0, width: int = 1280, height: int = 720
) -> dict[str, list[dict]]:
    """A TuSimple root with all four label files, ``per_file`` images each; returns the label
    records per file."""
    rng = np.random.default_rng(seed)
    records: dict[str, list[dict]] = {}
    for name, clip in (
        ("label_data_0313.json", "0313-1"),
        ("label_data_0601.json", "0601"),
        ("label_data_0531.json", "0531"),
        ("test_label.json", "0530"),
    ):
        lines = []
        for i in range(per_file):
            raw_file = f"clips/{clip}/{1000 + i}/20.jpg"
            xs = tusimple_xs(rng, int(rng.integers(2, 6)), width)
            rows = [int(round(y * height / 720)) for y in TUSIMPLE_ROWS]
            lanes = [
                np.array([(x, y) for x, y in zip(lane, rows, strict=True) if x >= 0], float)
                for lane in xs
            ]
            write_jpeg(root / raw_file, lane_image(width, height, lanes))
            lines.append({"lanes": xs, "h_samples": rows, "raw_file": raw_file})
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
        records[name] = lines
    return records


CULANE_CATEGORIES = [
    "test0_normal",
    "test1_crowd",
    "test2_hlight",
    "test3_shadow",
    "test4_noline",
    "test5_arrow",
    "test6_curve",
    "test7_cross",
    "test8_night",
]


def culane_lanes(
    rng: np.random.Generator, n_lanes: int, size: tuple[int, int] = (1640, 590)
) -> list[np.ndarray]:
    """CULane-like lanes: bottom-up points every 10 px from y=590 towards the horizon, some
    points beyond the image sides (as in CULane labels); scaled to a ``size`` (w, h) image."""
    lanes = []
    for k in range(n_lanes):
        top = rng.uniform(260, 300)
        ys = np.arange(590, top, -10.0)
        x_bottom = -200 + k * 2000 / max(n_lanes - 1, 1) + rng.uniform(-50, 50)
        x_top = 800 + rng.uniform(-40, 40) + 15 * k
        xs = x_bottom + (x_top - x_bottom) * (590 - ys) / (590 - top)
        lanes.append(np.stack((xs, ys), axis=1) * [size[0] / 1640, size[1] / 590])
    return lanes


def write_culane_tree(
    root: Path,
    counts: dict[str, int] | None = None,
    seed: int = 0,
    size: tuple[int, int] = (1640, 590),
) -> dict:
    """A CULane root: list/train_gt.txt, val.txt, test.txt and the nine test_split lists, with
    images and .lines.txt labels. The test images are spread over the categories. Returns
    {split: [(img_name, lanes)]} and {"categories": {img_name: category}}."""
    counts = counts or {"train": 4, "val": 2, "test": 9}
    rng = np.random.default_rng(seed)
    out: dict = {"categories": {}}
    (root / "list" / "test_split").mkdir(parents=True, exist_ok=True)
    category_lines: dict[str, list[str]] = {c: [] for c in CULANE_CATEGORIES}
    for split, n in counts.items():
        entries, list_lines = [], []
        for i in range(n):
            img_name = f"driver_{split}_30frame/05151640_0419.MP4/{i * 30:05d}.jpg"
            lanes = culane_lanes(rng, int(rng.integers(1, 5)), size)
            # Backgrounds differ by > 15 grey levels between frames: no near-duplicates.
            image = lane_image(*size, lanes, background=30 + 40 * (i % 3))
            write_jpeg(root / img_name, image)
            (root / img_name).with_suffix(".lines.txt").write_text(
                "".join(" ".join(f"{v:.3f}" for v in lane.reshape(-1)) + " \n" for lane in lanes)
            )
            entries.append((img_name, lanes))
            if split == "train":
                flags = " ".join("1" if j < len(lanes) else "0" for j in range(4))
                list_lines.append(f"/{img_name} /laneseg_label_w16/{img_name[:-3]}png {flags}")
            else:
                list_lines.append(f"/{img_name}")
            if split == "test":
                category = CULANE_CATEGORIES[i % len(CULANE_CATEGORIES)]
                category_lines[category].append(f"/{img_name}")
                out["categories"][img_name] = category.split("_")[1]
        list_name = "train_gt.txt" if split == "train" else f"{split}.txt"
        (root / "list" / list_name).write_text("\n".join(list_lines) + "\n")
        out[split] = entries
    for category, lines in category_lines.items():
        (root / "list" / "test_split" / f"{category}.txt").write_text(
            "".join(f"{x}\n" for x in lines)
        )
    return out


def tusimple_config(root: Path | None, **overrides) -> DatasetConfig:
    cfg = DatasetConfig(
        name="tusimple",
        root=str(root) if root is not None else None,
        ori_w=1280,
        ori_h=720,
        cut_height=160,
        img_w=320,
        img_h=128,
        max_lanes=5,
    )
    cfg.augment.third_op = "coarse_dropout"
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def culane_config(root: Path, **overrides) -> DatasetConfig:
    cfg = DatasetConfig(
        name="culane",
        root=str(root),
        ori_w=1640,
        ori_h=590,
        cut_height=270,
        img_w=800,
        img_h=320,
        max_lanes=4,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg
