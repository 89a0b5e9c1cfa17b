"""Equality with the official LLAMAS and CurveLanes evaluators, image by image, on committed
golden fixtures (written by tests/metrics/golden_benchmarks.py, which runs the official code
unmodified):

* golden_llamas.json.gz: 92 marker labels (synthetic scenes and random markers with negative
  rows, horizontal / vertical markers, dropped and renamed lanes) with the official
  spline_creator rows of l1, l0, r0, r1 (SHA-256 of the 717 float64 values), and 260 images
  (label + predictions) with the official per-image TP/FP/FN at IoU 0.50 .. 0.95 and the
  official ``eval_predictions`` totals;
* golden_curvelanes.json.gz: 240 images in the three sizes (up to 8 GT lanes, one-point GT
  lanes, predictions of one repeated point, lanes outside the image, images without lanes)
  with CondLaneNet's ``LaneMetricCore`` TP/FP/FN at IoU 0.50 .. 0.95.
"""

import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from src.metrics import (
    CurveLanesMetric,
    LLAMASMetric,
    curvelanes_image_counts,
    curvelanes_summary,
    llamas_image_counts,
    llamas_lanes,
    score_llamas_files,
    summarize_counts,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    with gzip.open(DATA / name, "rt") as handle:
        return json.load(handle)


def lanes(flat: list[list[float]]) -> list[np.ndarray]:
    return [np.array(lane, dtype=np.float64).reshape(-1, 2) for lane in flat]


@pytest.fixture(scope="module")
def llamas() -> dict:
    golden = load("golden_llamas.json.gz")
    for item in golden["labels"]:
        item["ours"] = llamas_lanes(item["label"], json.dumps(item["label"]), "golden.json")
    return golden


@pytest.fixture(scope="module")
def curvelanes() -> dict:
    return load("golden_curvelanes.json.gz")


def test_llamas_label_rows_equal_official(llamas):
    mismatches = []
    for i, item in enumerate(llamas["labels"]):
        ours = {}
        for name, values in item["ours"].rows.items():
            filled = np.flatnonzero(values != -1)
            digest = hashlib.sha256(values.astype(np.float64).tobytes()).hexdigest()
            ours[name] = {"first": int(filled[0]), "last": int(filled[-1]), "sha256": digest}
        if ours != item["rows"]:
            mismatches.append(i)
    assert mismatches == []


def test_llamas_per_image_counts_equal_official(llamas):
    thresholds = llamas["iou_thresholds"]
    mismatches = []
    for i, image in enumerate(llamas["images"]):
        gts = llamas["labels"][image["label"]]["ours"].lanes
        ours = llamas_image_counts(lanes(image["pred"]), gts, thresholds)
        if ours.tolist() != image["counts"]:
            mismatches.append(i)
    assert mismatches == []


def test_llamas_fixture_covers_the_cases(llamas):
    images, labels = llamas["images"], llamas["labels"]
    counts = np.array([image["counts"] for image in images])
    assert (counts[:, 0, 0] != counts[:, -1, 0]).sum() > 50  # TP changes with the threshold
    assert any(not image["pred"] for image in images)
    assert any(len(lane) == 2 for image in images for lane in image["pred"])  # one point
    assert any(
        np.any(np.all(np.diff(np.reshape(lane, (-1, 2)), axis=0) == 0, axis=1))
        for image in images
        for lane in image["pred"]
    )  # repeated consecutive points
    rows = [name for item in labels for name in item["rows"]]
    assert {"l1", "l0", "r0", "r1"} <= set(rows)
    # lanes with fewer than 2 rows of x >= 0 are not ground truth
    assert sum(len(item["ours"].lanes) < len(item["rows"]) for item in labels) >= 1


def test_llamas_metric_and_files_equal_official_totals(llamas, tmp_path):
    images, thresholds = llamas["images"], llamas["iou_thresholds"]
    metric = LLAMASMetric(thresholds)
    for start in range(0, len(images), 64):
        batch = images[start : start + 64]
        gts = [llamas["labels"][im["label"]]["ours"].lanes for im in batch]
        metric.update([lanes(im["pred"]) for im in batch], gts)
    expected = summarize_counts(np.sum([im["counts"] for im in images], axis=0), thresholds)
    result = metric.compute()
    assert all(result[key] == value for key, value in expected.items())
    for image in images:
        label = tmp_path / "labels" / "valid" / f"{image['name']}.json"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(json.dumps(llamas["labels"][image["label"]]["label"]))
        pred = tmp_path / "pred" / f"{image['name']}.lines.txt"
        pred.parent.mkdir(parents=True, exist_ok=True)
        pred.write_text("\n".join(" ".join(repr(v) for v in lane) for lane in image["pred"]))
    score = score_llamas_files(tmp_path / "pred", tmp_path, "valid")
    assert score.missing == [] and score.n_images == len(images)
    assert score.result["0.5"] == llamas["eval_predictions"]


def test_curvelanes_per_image_counts_equal_official(curvelanes):
    thresholds = curvelanes["iou_thresholds"]
    mismatches = []
    for i, image in enumerate(curvelanes["images"]):
        size = tuple(image["size"])
        ours = curvelanes_image_counts(lanes(image["pred"]), lanes(image["gt"]), size, thresholds)
        if ours.tolist() != image["counts"]:
            mismatches.append(i)
    assert mismatches == []


def test_curvelanes_fixture_covers_the_cases(curvelanes):
    images = curvelanes["images"]
    assert {tuple(im["size"]) for im in images} == {(1440, 2560), (660, 1570), (720, 1280)}
    assert sum(len(im["gt"]) > 4 for im in images) >= 20
    assert any(len(lane) == 2 for im in images for lane in im["gt"])  # one-point GT lanes
    assert any(len(lane) == 4 and lane[:2] == lane[2:] for im in images for lane in im["pred"])
    assert any(not im["pred"] for im in images)
    assert any(min(lane[0::2]) < 0 for im in images for lane in im["pred"])  # outside the image
    counts = np.array([im["counts"] for im in images])
    assert (counts[:, 0, 0] != counts[:, -1, 0]).sum() > 50


def test_curvelanes_metric_equals_official_summary(curvelanes):
    images, thresholds = curvelanes["images"][:120], curvelanes["iou_thresholds"]
    metric = CurveLanesMetric(thresholds)
    for start in range(0, len(images), 50):
        batch = images[start : start + 50]
        metric.update(
            [lanes(im["pred"]) for im in batch],
            [lanes(im["gt"]) for im in batch],
            [tuple(im["size"]) for im in batch],
        )
    result = metric.compute()
    tp, fp, fn = np.sum([im["counts"][0] for im in images], axis=0).tolist()
    # LaneMetricCore.summary(), as the reference computes it.
    eps = sys.float_info.epsilon
    precision, recall = tp / (tp + fp + eps), tp / (tp + fn + eps)
    f1 = 2 * precision * recall / (precision + recall + eps)
    expected = {"TP": tp, "FP": fp, "FN": fn, "Precision": precision, "Recall": recall, "F1": f1}
    assert result["0.5"] == expected
    summary = curvelanes_summary(np.sum([im["counts"] for im in images], axis=0), thresholds)
    assert all(result[key] == value for key, value in summary.items())
