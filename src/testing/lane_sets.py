"""Generated lane sets for benchmarks and fidelity checks (no dataset needed).

Images look like the datasets' labels and like what the prediction writers produce: CULane GT
lanes are float points every 10 px bottom -> top that may leave the image; predictions are rows
every 8 px inside the image with 5 decimals; TuSimple lanes are integer x per h_sample with -2
for no point. Predictions are perturbed copies of GT lanes (many of them near the IoU / pixel
thresholds), missed lanes and false positives; some images have more than 4 GT lanes, none or
no predictions, and (TuSimple) too many predictions or a run time over 200 ms.

Consecutive points never repeat, so the reference evaluators can run on every image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CULANE_H, CULANE_W = 590, 1640
TUSIMPLE_H, TUSIMPLE_W = 720, 1280
TUSIMPLE_H_SAMPLES = list(range(160, 720, 10))


def _curve_x(rng: np.random.Generator, ys: np.ndarray, y_ref: float, width: int) -> np.ndarray:
    """x of a smooth lane-like curve at ``ys`` (a vanishing-point style slope plus a bend)."""
    x_ref = rng.uniform(-0.2 * width, 1.2 * width)
    slope = (x_ref - width / 2) / rng.uniform(250, 450) + rng.normal(0, 0.3)
    bend = rng.normal(0, 4e-4)
    d = y_ref - ys
    return x_ref - slope * d + bend * d * d


def _culane_gt_lane(rng: np.random.Generator) -> np.ndarray:
    y_bottom = rng.choice([590.0, 580.0, rng.uniform(420, 600)])
    y_top = rng.uniform(240, min(y_bottom - 15, 420))
    ys = np.arange(y_bottom, y_top, -10.0)
    if len(ys) < 2:
        ys = np.array([y_bottom, y_bottom - 10.0])
    xs = _curve_x(rng, ys, y_bottom, CULANE_W) + rng.normal(0, 0.8, len(ys))
    return np.round(np.stack([xs, ys], axis=1), 3)


def _culane_pred_from(rng: np.random.Generator, gt: np.ndarray | None) -> np.ndarray:
    """A prediction in the writer's format: rows every 8 px from 270, inside the image."""
    rows = np.arange(270, 590, 8, dtype=np.float64)[::-1]
    if gt is None:
        y0 = rng.uniform(480, 600)
        xs = _curve_x(rng, rows, y0, CULANE_W)
        lo, hi = rng.uniform(270, 400), rng.uniform(480, 600)
    else:
        order = np.argsort(gt[:, 1])
        gys, gxs = gt[order, 1], gt[order, 0]
        shift = rng.choice(
            [rng.normal(0, 3), rng.uniform(-30, 30), rng.normal(0, 12)], p=[0.6, 0.25, 0.15]
        )
        tilt = rng.normal(0, 0.03)
        xs = np.interp(rows, gys, gxs, left=np.nan, right=np.nan)
        # Extend the GT's bottom trend so predictions run to the image bottom like decoded lanes.
        if len(gys) >= 2:
            k = (gxs[-1] - gxs[-2]) / (gys[-1] - gys[-2])
            below = rows > gys[-1]
            xs[below] = gxs[-1] + k * (rows[below] - gys[-1])
        xs = xs + shift + tilt * (rows - 400) + rng.normal(0, 1.0, len(rows))
        lo = gys[0] + rng.normal(0, 15)
        hi = 590.0 if rng.random() < 0.7 else gys[-1] + rng.normal(0, 15)
    keep = (rows >= lo) & (rows <= hi) & np.isfinite(xs) & (xs >= 0) & (xs < CULANE_W)
    pts = np.stack([xs[keep], rows[keep]], axis=1)
    return np.array([[float(f"{x:.5f}"), float(f"{y:.5f}")] for x, y in pts]).reshape(-1, 2)


def culane_images(
    n: int, seed: int = 0, lanes: tuple[int, int] = (3, 3)
) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """``n`` images as (preds, gts), lanes as (N, 2) float pixel arrays (predictions with at least
    2 points). ``lanes`` = typical (GT, prediction) counts; counts vary around them."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        r = rng.random()
        if r < 0.04:
            n_gt = 0
        elif r < 0.12:
            n_gt = int(rng.integers(5, 7))
        else:
            n_gt = int(np.clip(lanes[0] + rng.choice([-1, 0, 1], p=[0.25, 0.5, 0.25]), 1, 4))
        gts = [_culane_gt_lane(rng) for _ in range(n_gt)]
        preds = []
        if rng.random() > 0.04:
            for gt in gts:
                if rng.random() < 0.9 * min(1.0, lanes[1] / max(lanes[0], 1)):
                    preds.append(_culane_pred_from(rng, gt))
            while len(preds) < lanes[1] and rng.random() < 0.5:
                preds.append(_culane_pred_from(rng, None))
            if rng.random() < 0.25:
                preds.append(_culane_pred_from(rng, None))
        preds = [p for p in preds if len(p) >= 2]
        images.append((preds, gts))
    return images


@dataclass
class TuSimpleBatch:
    """Per-image TuSimple inputs as ``TuSimpleMetric.update`` takes them."""

    pred_xs: list[list[list[float]]]
    gt_xs: list[list[list[float]]]
    h_samples: list[list[int]]
    run_times: list[float]


def _tusimple_gt_lane(rng: np.random.Generator, ys: np.ndarray) -> np.ndarray:
    xs = _curve_x(rng, ys, float(ys[-1]), TUSIMPLE_W)
    start = int(rng.integers(0, max(1, len(ys) // 3)))
    end = len(ys) - int(rng.integers(0, max(1, len(ys) // 4)))
    lane = np.full(len(ys), -2, dtype=np.int64)
    seg = np.trunc(xs[start:end]).astype(np.int64)
    seg[(seg < 0) | (seg >= TUSIMPLE_W)] = -2
    lane[start:end] = seg
    return lane


def tusimple_images(n: int, seed: int = 0) -> TuSimpleBatch:
    """``n`` TuSimple images with integer lanes (-2 = no point) on varying h_samples."""
    rng = np.random.default_rng(seed)
    batch = TuSimpleBatch([], [], [], [])
    for _ in range(n):
        if rng.random() < 0.85:
            hs = np.array(TUSIMPLE_H_SAMPLES)
        else:
            hs = np.arange(int(rng.choice([200, 240, 280])), 720, 10)
        r = rng.random()
        n_gt = 0 if r < 0.03 else int(rng.integers(5, 7)) if r < 0.12 else int(rng.integers(2, 5))
        gts = [_tusimple_gt_lane(rng, hs.astype(np.float64)) for _ in range(n_gt)]
        # Sometimes two GT lanes so close that one prediction matches both (FP goes negative).
        if gts and rng.random() < 0.04:
            twin = gts[0] + int(rng.integers(3, 12))
            gts.append(np.where(gts[0] >= 0, twin, -2))
        preds = []
        for gt in gts:
            if rng.random() < 0.85:
                offset = rng.choice([rng.normal(0, 4), rng.uniform(-30, 30)], p=[0.75, 0.25])
                tilt = rng.normal(0, 0.02)
                p = np.where(
                    gt >= 0, gt + offset + tilt * (hs - 400) + rng.normal(0, 3, len(hs)), -2
                )
                p = np.where(rng.random(len(hs)) < 0.05, -2, p)
                if rng.random() < 0.2:  # a different vertical extent
                    cut = int(rng.integers(0, len(hs) // 2))
                    p[:cut] = -2
                preds.append(p)
        n_fp = int(rng.choice([0, 0, 0, 1, 2, 3]))
        for _ in range(n_fp):
            preds.append(_tusimple_gt_lane(rng, hs.astype(np.float64)))
        rng.shuffle(preds)
        as_float = rng.random() < 0.2
        batch.pred_xs.append(
            [(np.round(p, 2) if as_float else np.trunc(p).astype(np.int64)).tolist() for p in preds]
        )
        batch.gt_xs.append([g.tolist() for g in gts])
        batch.h_samples.append(hs.tolist())
        run_time = rng.choice([1.0, 15.5, 200.0, 200.5, 350.0], p=[0.6, 0.3, 0.04, 0.03, 0.03])
        batch.run_times.append(float(run_time))
    return batch
