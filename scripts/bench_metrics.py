"""Benchmark the lane metrics on generated data and print seconds per 1000 images.

    python scripts/bench_metrics.py [--images 1000] [--baseline-images 200] [--repeats 3]

CULane: images with ~3 GT and ~3 predicted lanes (``src.testing.lane_sets``). Timed:
* ``culane_image_counts`` with the Python evaluator's recipe (IoU 0.5, and all ten mF1
  thresholds), the C++ tool's recipe, ``CULaneMetric.update``, and scoring the same images from
  ``.lines.txt`` files (``score_culane_files``, file reading included);
* a baseline in this script: the same definition implemented the straightforward way (a full
  590x1640 mask per lane, one ``cv2.line`` per segment, full-mask IoU, Hungarian assignment), on
  ``--baseline-images`` images; its per-image counts must equal ours (checked here).
TuSimple: ``tusimple_image_scores`` against a lane-by-lane baseline (one least-squares fit per
GT lane, one comparison per lane pair), per-image results checked equal.

One process, single thread for the timed code. Quoted baseline: the reference tools as timed by
this project's spec writer on the 2-core development machine (not re-run here): Python CULane
evaluator 39 s / 1000 images (21 s with 2 processes), C++ tool 13.6 s, TuSimple lane.py 3.4 s.
Goals: CULane <= 4 s, TuSimple <= 0.7 s per 1000 images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import splev, splprep
from scipy.optimize import linear_sum_assignment

from src.metrics import (
    MF1_IOU_THRESHOLDS,
    CULaneMetric,
    culane_image_counts,
    culane_lines_text,
    score_culane_files,
    tusimple_image_scores,
)
from src.testing.lane_sets import culane_images, tusimple_images

GOAL_CULANE_S = 4.0
GOAL_TUSIMPLE_S = 0.7
QUOTED = {"culane_python_1proc": 39.0, "culane_python_2proc": 21.0, "culane_cpp_tool": 13.6}
QUOTED_TUSIMPLE = 3.4


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``repeats`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


# ---- baselines: the definitions written the plain way -------------------------------------


def _baseline_lane_mask(points: np.ndarray) -> np.ndarray:
    k = min(3, len(points) - 1)
    tck, u = splprep([points[:, 0], points[:, 1]], s=0, k=k)
    xs, ys = splev(np.linspace(0.0, 1.0, (len(u) - 1) * 5 + 1), tck)
    pts = np.stack([xs, ys], axis=1).astype(np.int32)
    mask = np.zeros((590, 1640), dtype=np.uint8)
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, thickness=30)
    return mask > 0


def baseline_culane_counts(preds, gts, thresholds) -> np.ndarray:
    preds = [p for p in preds if len(p) >= 2]
    gts = [g for g in gts if len(g) >= 2]
    pm = [_baseline_lane_mask(p) for p in preds]
    gm = [_baseline_lane_mask(g) for g in gts]
    ious = np.zeros((len(pm), len(gm)))
    for i, a in enumerate(pm):
        for j, b in enumerate(gm):
            ious[i, j] = (a & b).sum() / (a | b).sum()
    rows, cols = linear_sum_assignment(1 - ious)
    tp = np.array([(ious[rows, cols] > t).sum() for t in thresholds])
    return np.stack([tp, len(preds) - tp, len(gts) - tp], axis=1)


def baseline_tusimple(pred, gt, ys, run_time) -> tuple[float, float, float]:
    if run_time > 200 or len(pred) > len(gt) + 2:
        return 0.0, 0.0, 1.0
    ys = np.asarray(ys, dtype=np.float64)
    best = []
    for g in gt:
        g = np.asarray(g, dtype=np.float64)
        sel = g >= 0
        angle = 0.0
        if sel.sum() > 1:
            dy = ys[sel] - ys[sel].mean()
            angle = np.arctan((dy * (g[sel] - g[sel].mean())).sum() / (dy * dy).sum())
        thresh = 20.0 / np.cos(angle)
        accs = []
        for p in pred:
            pa = np.array([v if v >= 0 else -100 for v in p], dtype=np.float64)
            ga = np.array([v if v >= 0 else -100 for v in g], dtype=np.float64)
            accs.append(np.sum(np.where(np.abs(pa - ga) < thresh, 1.0, 0.0)) / len(ga))
        best.append(max(accs) if accs else 0.0)
    matched = sum(1 for a in best if a >= 0.85)
    fn = float(len(gt) - matched)
    if len(gt) > 4 and fn > 0:
        fn -= 1
    s = 0.0
    for a in best:
        s += a
    if len(gt) > 4:
        s -= min(best)
    d = max(min(4.0, len(gt)), 1.0)
    return s / d, ((len(pred) - matched) / len(pred) if pred else 0.0), fn / d


# ---- benchmark -------------------------------------------------------------------------------


def bench_culane(n: int, n_base: int, repeats: int, seed: int) -> dict:
    images = culane_images(n, seed=seed)
    thr1, thr10 = (0.5,), MF1_IOU_THRESHOLDS
    per_k = 1000.0 / n

    def run(thresholds, evaluator="python"):
        return [culane_image_counts(p, g, thresholds, evaluator) for p, g in images]

    t_py1, counts1 = timed(lambda: run(thr1), repeats)
    t_py10, counts10 = timed(lambda: run(thr10), repeats)
    t_cpp, _ = timed(lambda: run(thr10, "cpp"), 1)

    def metric_update():
        metric = CULaneMetric(thr10)
        for start in range(0, n, 32):
            batch = images[start : start + 32]
            metric.update([p for p, _ in batch], [g for _, g in batch])
        return metric.compute()

    t_metric, _ = timed(metric_update, 1)

    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for i, (p, g) in enumerate(images):
            name = f"/driver_00_30frame/bench.MP4/{i:05d}.jpg"
            names.append(name)
            for sub, lanes in (("pred", p), ("gt", g)):
                path = Path(tmp, sub, name[1:-4] + ".lines.txt")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(culane_lines_text(lanes))
        Path(tmp, "list.txt").write_text("\n".join(names) + "\n")
        t_files, _ = timed(
            lambda: score_culane_files(
                Path(tmp, "pred"), Path(tmp, "gt"), Path(tmp, "list.txt"), thr10
            ),
            1,
        )

    base = images[:n_base]
    t0 = time.perf_counter()
    base_counts = [baseline_culane_counts(p, g, thr10) for p, g in base]
    t_base = time.perf_counter() - t0
    equal = all(np.array_equal(a, b) for a, b in zip(base_counts, counts10[:n_base], strict=True))
    equal &= all(np.array_equal(a, b[:1]) for a, b in zip(counts1, counts10, strict=True))
    base_per_k = t_base * 1000.0 / max(n_base, 1)
    return {
        "images": n,
        "gt_lanes_per_image": sum(len(g) for _, g in images) / n,
        "pred_lanes_per_image": sum(len(p) for p, _ in images) / n,
        "ours_python_iou0.5_s_per_1000": t_py1 * per_k,
        "ours_python_10_thresholds_s_per_1000": t_py10 * per_k,
        "ours_cpp_recipe_10_thresholds_s_per_1000": t_cpp * per_k,
        "ours_CULaneMetric_update_s_per_1000": t_metric * per_k,
        "ours_score_culane_files_s_per_1000": t_files * per_k,
        "baseline_full_canvas_s_per_1000": base_per_k,
        "baseline_images": n_base,
        "speedup_vs_baseline": base_per_k / (t_py10 * per_k),
        "speedup_vs_quoted_reference_1proc": QUOTED["culane_python_1proc"] / (t_py10 * per_k),
        "identical_to_baseline": bool(equal),
        "goal_s_per_1000": GOAL_CULANE_S,
        "meets_goal": t_py10 * per_k <= GOAL_CULANE_S,
    }


def bench_tusimple(n: int, repeats: int, seed: int) -> dict:
    b = tusimple_images(n, seed=seed)
    per_k = 1000.0 / n
    args = list(zip(b.pred_xs, b.gt_xs, b.h_samples, b.run_times, strict=True))
    t_ours, ours = timed(lambda: [tusimple_image_scores(*a) for a in args], repeats)
    t_base, base = timed(lambda: [baseline_tusimple(*a) for a in args], 1)
    return {
        "images": n,
        "ours_s_per_1000": t_ours * per_k,
        "baseline_lane_by_lane_s_per_1000": t_base * per_k,
        "speedup_vs_baseline": t_base / t_ours,
        "speedup_vs_quoted_reference": QUOTED_TUSIMPLE / (t_ours * per_k),
        "identical_to_baseline": all(tuple(a) == tuple(b) for a, b in zip(ours, base, strict=True)),
        "goal_s_per_1000": GOAL_TUSIMPLE_S,
        "meets_goal": t_ours * per_k <= GOAL_TUSIMPLE_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--baseline-images", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
    }
    culane = bench_culane(args.images, args.baseline_images, args.repeats, args.seed)
    tusimple = bench_tusimple(args.images, args.repeats, args.seed)
    report = {"environment": env, "culane": culane, "tusimple": tusimple, "quoted": QUOTED}

    print(f"environment: {json.dumps(env)}")
    print(
        f"CULane, {culane['images']} generated images "
        f"({culane['gt_lanes_per_image']:.2f} GT, {culane['pred_lanes_per_image']:.2f} predicted "
        "lanes per image), seconds per 1000 images:"
    )
    rows = [
        ("ours, Python recipe, IoU 0.5", culane["ours_python_iou0.5_s_per_1000"]),
        ("ours, Python recipe, 10 thresholds", culane["ours_python_10_thresholds_s_per_1000"]),
        ("ours, C++ recipe, 10 thresholds", culane["ours_cpp_recipe_10_thresholds_s_per_1000"]),
        ("ours, CULaneMetric.update", culane["ours_CULaneMetric_update_s_per_1000"]),
        ("ours, score_culane_files (reading)", culane["ours_score_culane_files_s_per_1000"]),
        (
            f"baseline full canvas ({culane['baseline_images']} images)",
            culane["baseline_full_canvas_s_per_1000"],
        ),
        ("quoted: reference Python evaluator, 1 proc", QUOTED["culane_python_1proc"]),
        ("quoted: reference Python evaluator, 2 procs", QUOTED["culane_python_2proc"]),
        ("quoted: C++ tool", QUOTED["culane_cpp_tool"]),
    ]
    for label, value in rows:
        print(f"  {label:<46} {value:8.2f}")
    print(
        f"  speed-up vs baseline {culane['speedup_vs_baseline']:.1f}x, vs quoted reference "
        f"{culane['speedup_vs_quoted_reference_1proc']:.1f}x; identical counts: "
        f"{culane['identical_to_baseline']}; goal <= {GOAL_CULANE_S} s: "
        f"{'met' if culane['meets_goal'] else 'NOT met'}"
    )
    print(f"TuSimple, {tusimple['images']} generated images, seconds per 1000 images:")
    print(f"  {'ours (vectorised per image)':<46} {tusimple['ours_s_per_1000']:8.3f}")
    print(f"  {'baseline lane by lane':<46} {tusimple['baseline_lane_by_lane_s_per_1000']:8.3f}")
    print(f"  {'quoted: reference lane.py':<46} {QUOTED_TUSIMPLE:8.3f}")
    print(
        f"  speed-up vs baseline {tusimple['speedup_vs_baseline']:.1f}x, vs quoted reference "
        f"{tusimple['speedup_vs_quoted_reference']:.1f}x; identical results: "
        f"{tusimple['identical_to_baseline']}; goal <= {GOAL_TUSIMPLE_S} s: "
        f"{'met' if tusimple['meets_goal'] else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if culane["identical_to_baseline"] and tusimple["identical_to_baseline"] else 1


if __name__ == "__main__":
    sys.exit(main())
