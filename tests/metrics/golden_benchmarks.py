"""Writes tests/metrics/data/golden_llamas.json.gz and golden_curvelanes.json.gz: generated
inputs and what the official code, run unmodified, gives for them. Not a test (pytest does not
collect it); rerun it only to regenerate the fixtures:

    mkdir -p /tmp/ref && cd /tmp/ref
    git clone https://github.com/karstenBehrendt/unsupervised_llamas  # 9b99f46; the folder
    # name is the package name its imports use
    git clone https://github.com/aliyun/conditional-lane-detection  # c57b242
    pip install --target /tmp/ref/site shapely p_tqdm  # the LLAMAS metric's imports
    cd <this repository>
    PYTHONPATH=$PWD:/tmp/ref:/tmp/ref/site python tests/metrics/golden_benchmarks.py /tmp/ref \
        /tmp/ref/conditional-lane-detection/tools/condlanenet/lane_metric.py

LLAMAS: labels from synthetic scenes (``synthetic_formats.llamas_label``) and random marker
labels (negative rows, horizontal and vertical markers, lanes dropped and renamed, shuffled
markers), each stored with the official ``get_horizontal_values_for_four_lanes`` result (a
SHA-256 of the 717 float64 values per lane, plus the first and last filled rows). Images pair a
label with predictions written as ``.lines.txt`` files and read back by the official
``load_prediction``; counts per IoU threshold from the official per-image ``culane_metric``, and
the official ``eval_predictions`` totals (IoU 0.5) over a tree with one label file per image.

CurveLanes: ground truth from synthetic scenes in the three image sizes (string coordinates
read with ``float``), predictions in original pixels; counts from ``LaneMetricCore`` (one per
threshold) fed as CondLaneNet's test script feeds it (predictions with fewer than 2 points
removed, as its ``adjust_result`` does).
"""

from __future__ import annotations

import bdb
import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from src.data.curvelanes import CROP_OFFSETS
from src.data.synthetic_formats import curvelanes_lines, llamas_label
from src.data.synthetic_scene import SceneTextures, render_scene
from src.metrics.culane import MF1_IOU_THRESHOLDS

DATA = Path(__file__).parent / "data"
THRESHOLDS = list(MF1_IOU_THRESHOLDS)


def rows_digest(values: np.ndarray) -> str:
    """SHA-256 of a lane's 717 x values as float64 (the golden's exact fingerprint)."""
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def random_marker_label(rng: np.random.Generator) -> dict:
    """A marker label with the awkward parts the scenes do not produce."""
    lanes = []
    for _ in range(int(rng.integers(1, 7))):
        n = int(rng.choice([1, 2, 3, 5, 8, 12]))
        y0, x0, slope = rng.uniform(200, 716), rng.uniform(-80, 1350), rng.normal(0, 1.5)
        as_float = rng.random() < 0.3
        markers = []
        for j in range(n):
            y = -rng.uniform(1, 50) if rng.random() < 0.05 else y0 - j * rng.uniform(5, 40)
            h = int(rng.choice([0, 1, 2, 3, 10, 25]))
            x = x0 + slope * (y0 - y)
            dx = slope * h if rng.random() > 0.1 else 0.0

            def v(a: float, f: bool = as_float) -> float | int:
                return round(float(a), 1) if f else int(a)

            z = 5 + j * 3 + rng.normal(0, 0.5)
            markers.append(
                {
                    "pixel_start": {"x": v(x), "y": v(y)},
                    "pixel_end": {"x": v(x + dx), "y": v(y - h)},
                    "world_start": {"x": 0.1, "y": 1.5, "z": round(float(z), 3)},
                    "world_end": {"x": 0.2, "y": 1.5, "z": round(float(z) + 2, 3)},
                }
            )
        if rng.random() < 0.3:
            markers = [markers[i] for i in rng.permutation(n)]
        lane_id = str(rng.choice(["l0", "l1", "l2", "l3", "r0", "r1", "r2", "r3"]))
        lanes.append({"lane_id": lane_id, "markers": markers})
    return {"projection_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "lanes": lanes}


def curve_lane(rng: np.random.Generator, ys: np.ndarray, width: float, y_ref: float) -> np.ndarray:
    x_ref = rng.uniform(-0.1 * width, 1.1 * width)
    slope = (x_ref - width / 2) / rng.uniform(0.3, 0.6) / y_ref + rng.normal(0, 0.3)
    d = y_ref - ys
    return x_ref - slope * d + rng.normal(0, 3e-4 * 1280 / width) * d * d


def perturbed(
    rng: np.random.Generator, gt: np.ndarray, rows: np.ndarray, width: float, scale: float
) -> np.ndarray:
    """A prediction near a GT lane (shift, tilt, other extent) on ``rows``, bottom -> top;
    ``scale``: pixels per pixel of a 720-row image."""
    order = np.argsort(gt[:, 1])
    gys, gxs = gt[order, 1], gt[order, 0]
    xs = np.interp(rows, gys, gxs, left=np.nan, right=np.nan)
    if len(gys) >= 2 and gys[-1] > gys[-2]:
        below = rows > gys[-1]
        xs[below] = gxs[-1] + (gxs[-1] - gxs[-2]) / (gys[-1] - gys[-2]) * (rows[below] - gys[-1])
    shift = rng.choice(
        [rng.normal(0, 3), rng.uniform(-40, 40), rng.normal(0, 14)], p=[0.55, 0.3, 0.15]
    )
    tilt = rng.normal(0, 0.03)
    xs = xs + scale * shift + tilt * (rows - rows.mean()) + rng.normal(0, scale, len(rows))
    lo = gys[0] + rng.normal(0, 20 * scale)
    hi = rows.max() if rng.random() < 0.7 else gys[-1] + rng.normal(0, 20 * scale)
    keep = (rows >= lo) & (rows <= hi) & np.isfinite(xs) & (xs >= 0) & (xs < width)
    return np.stack([xs[keep], rows[keep]], axis=1)[::-1]


def quirky(
    rng: np.random.Generator, lanes: list, width: float, height: float, crashes_on: str
) -> list[np.ndarray]:
    """One-point lanes, lanes outside the image, no lanes, and repeated points where the
    reference survives them (``crashes_on``: "repeats" for CondLaneNet, which fails on any
    repeated point but a lane of one point twice; "pairs" for LLAMAS, which fails on that)."""
    out = [lane for lane in lanes if len(lane)]
    if out and crashes_on == "pairs" and rng.random() < 0.08:
        k = int(rng.integers(len(out)))
        i = int(rng.integers(len(out[k])))
        out[k] = np.insert(out[k], i, out[k][i], axis=0)
    if crashes_on == "repeats" and rng.random() < 0.05:
        p = np.array([rng.uniform(0, width), height - 1.0])
        out.append(np.stack([p, p]))
    if rng.random() < 0.06:
        out.append(np.array([[rng.uniform(0, width), rng.uniform(0.5, 1) * height]]))
    if rng.random() < 0.04:
        ys = np.linspace(height * 0.5, height - 1, 6)
        out.append(np.stack([np.full(6, -200.0 - rng.uniform(0, 50)), ys], axis=1))
    if rng.random() < 0.04:
        out = []
    return out


def flat(lane: np.ndarray, decimals: int) -> list[float]:
    return [round(float(v), decimals) for v in np.asarray(lane).reshape(-1)]


def lines_text(lanes: list[list[float]]) -> str:
    return "\n".join(" ".join(repr(v) for v in lane) for lane in lanes)


# ---------------------------------------------------------------------------- LLAMAS


def llamas_labels(ev, sc, scratch: Path, n_scene: int, n_random: int) -> list[dict]:
    rng = np.random.default_rng(25)
    textures = SceneTextures.create(1276, 717, 0)
    docs = []
    for i in range(n_scene):
        scene = render_scene(np.random.default_rng([25, i]), 1276, 717, textures)
        docs.append(llamas_label(np.random.default_rng([25, i, 1]), scene.camera, scene.lines))
    while len(docs) < n_scene + n_random:
        docs.append(random_marker_label(rng))
    kept = []
    for i, doc in enumerate(docs):
        path = scratch / "one" / f"{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                rows = sc.get_horizontal_values_for_four_lanes(str(path))
                anno = [ev.add_ys(xs) for xs in rows if (np.array(xs) >= 0).sum() > 1]
        except (AssertionError, ValueError, IndexError, bdb.BdbQuit):
            continue  # the official code crashes on it (tests/metrics/test_llamas.py has those)
        lanes = {}
        for name, xs in zip(("l1", "l0", "r0", "r1"), rows, strict=True):
            values = np.array(xs, dtype=np.float64)
            filled = np.flatnonzero(values != -1)
            if len(filled):
                lanes[name] = {
                    "first": int(filled[0]),
                    "last": int(filled[-1]),
                    "sha256": rows_digest(values),
                }
        kept.append({"label": doc, "rows": lanes, "gt": [np.array(a, dtype=float) for a in anno]})
    return kept


def llamas_golden(ref: Path) -> dict:
    sys.path[:0] = [str(ref)]
    import unsupervised_llamas.culane_metric.evaluate as ev
    import unsupervised_llamas.label_scripts.spline_creator as sc

    scratch = Path(tempfile.mkdtemp(prefix="golden_llamas_"))
    labels = llamas_labels(ev, sc, scratch, n_scene=40, n_random=60)
    rng = np.random.default_rng(7)
    images = []
    for _ in range(260):
        label_index = int(rng.integers(len(labels)))
        gts = labels[label_index]["gt"]
        step = int(rng.choice([1, 8, 16], p=[0.05, 0.45, 0.5]))
        rows = np.arange(300, 717, step, dtype=np.float64)
        preds = [perturbed(rng, gt, rows, 1276, 1.0) for gt in gts if rng.random() < 0.85]
        for _ in range(int(rng.choice([0, 0, 1, 2]))):
            xs = curve_lane(rng, rows, 1276, 716.0)
            keep = (xs >= 0) & (xs < 1276)
            preds.append(np.stack([xs[keep], rows[keep]], axis=1)[::-1])
        preds = quirky(rng, preds, 1276, 717, "pairs")
        decimals = 5 if step == 1 else 2
        images.append({"label": label_index, "pred": [flat(p, decimals) for p in preds]})
    label_dir, pred_dir = scratch / "labels" / "valid", scratch / "pred"
    for i, image in enumerate(images):
        rel = f"rec_{i % 5}/{i:05d}"
        (label_dir / f"{rel}.json").parent.mkdir(parents=True, exist_ok=True)
        (label_dir / f"{rel}.json").write_text(json.dumps(labels[image["label"]]["label"]))
        (pred_dir / f"{rel}.lines.txt").parent.mkdir(parents=True, exist_ok=True)
        (pred_dir / f"{rel}.lines.txt").write_text(lines_text(image["pred"]))
        image["name"] = rel
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        annotations, label_paths = ev.load_labels(str(label_dir))
        predictions = ev.load_prediction_list(label_paths, str(pred_dir))
        by_name = {
            p.removesuffix(".json"): (a, q)
            for p, a, q in zip(label_paths, annotations, predictions, strict=True)
        }
        for image in images:
            anno, pred = by_name[image["name"]]
            image["counts"] = [
                list(ev.culane_metric(pred, anno, iou_threshold=t)) for t in THRESHOLDS
            ]
        totals = ev.eval_predictions(
            str(pred_dir), str(label_dir), unofficial=False, sequential=True
        )
    shutil.rmtree(scratch)
    return {
        "source": "karstenBehrendt/unsupervised_llamas@9b99f46 culane_metric/evaluate.py",
        "iou_thresholds": THRESHOLDS,
        "labels": [{"label": item["label"], "rows": item["rows"]} for item in labels],
        "images": images,
        "eval_predictions": totals,
    }


# ---------------------------------------------------------------------------- CurveLanes


def curvelanes_golden(lane_metric_py: Path) -> dict:
    spec = importlib.util.spec_from_file_location("condlane_lane_metric", lane_metric_py)
    lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lm)
    rng = np.random.default_rng(11)
    sizes = list(CROP_OFFSETS.items())
    textures = {}
    images = []
    for i in range(240):
        (width, height), cut = sizes[i % 3]
        scale = 2 if width > 2000 else 1
        w, h = width // scale, height // scale
        if (w, h) not in textures:
            textures[(w, h)] = SceneTextures.create(w, h, 0)
        counts = {"line_counts": ((5, 6, 7, 8), (0.25, 0.25, 0.25, 0.25))} if i % 4 == 1 else {}
        scene = render_scene(np.random.default_rng([11, i]), w, h, textures[(w, h)], **counts)
        lines = curvelanes_lines(
            np.random.default_rng([11, i, 1]), scene.camera, scene.lines, scale
        )
        gts = [np.array([[float(p["x"]), float(p["y"])] for p in lane]) for lane in lines]
        if rng.random() < 0.05 and gts:
            gts.append(gts[0][:1] + rng.uniform(-5, 5, 2))  # a one-point GT lane
        rows = np.arange(cut, height, 8 * scale, dtype=np.float64)
        preds = [perturbed(rng, gt, rows, width, height / 720) for gt in gts if rng.random() < 0.85]
        for _ in range(int(rng.choice([0, 0, 1, 2]))):
            xs = curve_lane(rng, rows, width, height - 1.0)
            keep = (xs >= 0) & (xs < width)
            preds.append(np.stack([xs[keep], rows[keep]], axis=1)[::-1])
        preds = quirky(rng, preds, width, height, "repeats")
        image = {
            "size": [height, width],
            "gt": [flat(g, 2) for g in gts],
            "pred": [flat(p, 2) for p in preds],
        }
        image["counts"] = curvelanes_reference_counts(lm, image)
        images.append(image)
    return {
        "source": "aliyun/conditional-lane-detection@c57b242 tools/condlanenet/lane_metric.py",
        "iou_thresholds": THRESHOLDS,
        "images": images,
    }


def curvelanes_reference_counts(lm, image: dict) -> list[list[int]]:
    def spec(lanes: list[list[float]]) -> list[list[dict]]:
        return [
            [{"x": lane[k], "y": lane[k + 1]} for k in range(0, len(lane), 2)] for lane in lanes
        ]

    shape = {"height": image["size"][0], "width": image["size"][1]}
    preds = [lane for lane in spec(image["pred"]) if len(lane) > 1]  # CondLaneNet's adjust_result
    out = []
    for threshold in THRESHOLDS:
        core = lm.LaneMetricCore(
            eval_width=224, eval_height=224, iou_thresh=threshold, lane_width=5
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            core(dict(Lines=spec(image["gt"]), Shape=shape), dict(Lines=preds, Shape=shape))
        record = core.result_record[-1]
        hit, pr, gt = record["hit_num"], record["pr_num"], record["gt_num"]
        out.append([hit, pr - hit, gt - hit])
    return out


def main() -> None:
    sys.stdin = open(os.devnull)  # the official spline_creator opens the debugger on bad rows
    ref, lane_metric_py = Path(sys.argv[1]), Path(sys.argv[2])
    for name, golden in (
        ("golden_curvelanes.json.gz", curvelanes_golden(lane_metric_py)),
        ("golden_llamas.json.gz", llamas_golden(ref)),
    ):
        with gzip.open(DATA / name, "wt") as handle:
            json.dump(golden, handle, separators=(",", ":"))
        print(name, len(golden["images"]), "images")


if __name__ == "__main__":
    main()
