"""Equality with the reference evaluators, image by image, on a committed golden fixture.

The fixture (tests/metrics/data/) holds generated images (``src.testing.lane_sets``) and the
results the reference tools gave for them:

* golden_culane.json.gz: 150 CULane images (chosen from 3,000 to include near-threshold IoUs,
  images where the two recipes differ, more than 4 GT lanes, no GT, no predictions) with
  per-image [TP, FP, FN] at IoU 0.50, 0.55, ..., 0.95 from the Python evaluator of
  LaneATT/CLRNet/SRLane ("python") and from the SCNN C++ tool built from source against
  OpenCV 4.6 ("cpp").
* golden_tusimple.json.gz: 250 TuSimple images with (accuracy, FP, FN) from the benchmark's
  ``LaneEval.bench``.
"""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from src.metrics import (
    CULaneMetric,
    TuSimpleMetric,
    culane_image_counts,
    summarize_counts,
    tusimple_image_scores,
)

DATA = Path(__file__).parent / "data"


def load(name: str) -> dict:
    with gzip.open(DATA / name, "rt") as f:
        return json.load(f)


def lanes(flat: list[list[float]]) -> list[np.ndarray]:
    return [np.array(lane, dtype=np.float64).reshape(-1, 2) for lane in flat]


@pytest.fixture(scope="module")
def culane() -> dict:
    return load("golden_culane.json.gz")


@pytest.fixture(scope="module")
def tusimple() -> dict:
    return load("golden_tusimple.json.gz")


@pytest.mark.parametrize("evaluator", ["python", "cpp"])
def test_culane_per_image_counts_equal_reference(culane, evaluator):
    thresholds = culane["iou_thresholds"]
    mismatches = []
    for i, image in enumerate(culane["images"]):
        ours = culane_image_counts(lanes(image["pred"]), lanes(image["gt"]), thresholds, evaluator)
        if ours.tolist() != image[evaluator]:
            mismatches.append(i)
    assert mismatches == []


def test_culane_fixture_covers_the_cases(culane):
    images = culane["images"]
    assert sum(len(im["gt"]) > 4 for im in images) >= 10
    assert any(not im["gt"] for im in images) and any(not im["pred"] for im in images)
    assert sum(im["python"] != im["cpp"] for im in images) >= 20  # the recipes differ here
    assert all(im["python"][0][0] >= im["python"][-1][0] for im in images)


def test_culane_metric_totals_equal_reference(culane):
    thresholds = culane["iou_thresholds"]
    metric = CULaneMetric(thresholds)
    images = culane["images"]
    for start in range(0, len(images), 32):
        batch = images[start : start + 32]
        metric.update([lanes(im["pred"]) for im in batch], [lanes(im["gt"]) for im in batch])
    expected = summarize_counts(np.sum([im["python"] for im in images], axis=0), thresholds)
    result = metric.compute()
    for key, value in expected.items():
        assert result[key] == value


def test_tusimple_per_image_scores_equal_reference(tusimple):
    mismatches = [
        i
        for i, im in enumerate(tusimple["images"])
        if list(tusimple_image_scores(im["pred"], im["gt"], im["h_samples"], im["run_time"]))
        != im["ref"]
    ]
    assert mismatches == []


def test_tusimple_metric_sums_equal_reference(tusimple):
    images = tusimple["images"]
    metric = TuSimpleMetric()
    for start in range(0, len(images), 50):
        batch = images[start : start + 50]
        metric.update(
            [im["pred"] for im in batch],
            [im["gt"] for im in batch],
            [im["h_samples"] for im in batch],
            [im["run_time"] for im in batch],
        )
    # The benchmark adds per-image values one by one and divides by the number of images.
    accuracy = fp = fn = 0.0
    for im in images:
        accuracy += im["ref"][0]
        fp += im["ref"][1]
        fn += im["ref"][2]
    result = metric.compute()
    n = len(images)
    assert (result["Accuracy"], result["FP"], result["FN"]) == (accuracy / n, fp / n, fn / n)
