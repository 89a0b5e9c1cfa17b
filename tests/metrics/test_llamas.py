"""LLAMAS lane metric: the rules and the official code's quirks, on hand-made lanes.

Equality with the official evaluator image by image is in test_golden_benchmarks.py; here each
rule is shown on its own. Ground-truth lanes are given as the label reader gives them (points
of rows 300..716); predictions as read from a ``.lines.txt`` file.
"""

import cv2
import numpy as np

from src.metrics import LLAMASMetric, llamas_image_counts
from src.metrics.culane import python_lane_points
from src.metrics.llamas import llamas_gt_masks, llamas_pred_masks
from src.metrics.raster import iou_matrix

ROWS = np.arange(300, 717, dtype=np.float64)


def gt_lane(x0: float, slope: float = 0.0) -> np.ndarray:
    """A GT lane at every row 300..716: x = x0 + slope * (716 - y)."""
    return np.stack([x0 + slope * (716 - ROWS), ROWS], axis=1)


def pred_lane(x0: float, slope: float = 0.0, step: int = 16) -> np.ndarray:
    """A prediction bottom -> top every ``step`` rows, as the writer orders it."""
    ys = np.arange(716, 299, -step, dtype=np.float64)
    return np.stack([x0 + slope * (716 - ys), ys], axis=1)


def counts(preds, gts, thresholds=(0.5,)):
    return llamas_image_counts(preds, gts, thresholds).tolist()


def test_thresholds_are_strict():
    gt = gt_lane(600.0, 0.3)
    (iou,) = iou_matrix(llamas_pred_masks([pred_lane(600.0, 0.3)]), llamas_gt_masks([gt]))[0]
    assert 0.95 < iou < 1  # the same line, drawn from 50 spline samples vs every row
    assert counts([pred_lane(600.0, 0.3)], [gt], (iou, np.nextafter(iou, 0))) == [
        [0, 1, 1],
        [1, 0, 0],
    ]


def test_predictions_are_splined_with_50_samples_and_truncated():
    lane = pred_lane(400.7, 0.45, step=8)
    points = python_lane_points(lane, 50)
    assert points.shape == (50, 2) and points.dtype == np.int32
    assert points[0].tolist() == [400, 716]  # 400.7 truncated, not rounded


def test_ground_truth_is_drawn_as_given_without_a_spline():
    # A zig-zag GT: a spline through it would differ from the polyline of its points.
    gt = gt_lane(500.0)
    gt[::2, 0] += 40.0
    (mask,) = llamas_gt_masks([gt])
    full = np.zeros((717, 1276), dtype=np.uint8)
    points = gt.astype(np.int32)
    for p, q in zip(points[:-1], points[1:], strict=True):
        cv2.line(full, tuple(int(v) for v in p), tuple(int(v) for v in q), 1, 30)
    assert mask.area == int(full.sum())


def test_prediction_with_fewer_than_two_points_is_dropped():
    assert counts([np.array([[500.0, 700.0]])], [gt_lane(500.0)]) == [[0, 0, 1]]


def test_repeated_consecutive_points_are_removed_as_the_official_code_does():
    lane = pred_lane(640.0, -0.2)
    repeated = np.insert(lane, 3, lane[3], axis=0)
    gt = [gt_lane(640.0, -0.2)]
    assert counts([repeated], gt, (0.5, 0.9)) == counts([lane], gt, (0.5, 0.9))
    # One point twice: the official spline fails; here it is a lane with fewer than 2 points.
    pair = np.array([[640.0, 716.0], [640.0, 716.0]])
    assert counts([pair], gt) == [[0, 0, 1]]


def test_lanes_outside_the_image_score_zero_without_a_nan():
    outside = pred_lane(-400.0)
    assert counts([outside], [gt_lane(300.0)]) == [[0, 1, 1]]
    # Both without pixels: the official IoU is 0 / 0 and the assignment fails; here 0.
    assert counts([outside], [gt_lane(1500.0)]) == [[0, 1, 1]]


def test_ground_truth_lane_with_one_point_is_dropped():
    assert counts([pred_lane(500.0)], [gt_lane(500.0)[:1]]) == [[0, 1, 0]]


def test_matching_is_one_to_one():
    gts = [gt_lane(500.0)]
    assert counts([pred_lane(500.0), pred_lane(503.0)], gts) == [[1, 1, 0]]
    assert counts([pred_lane(500.0)], [gt_lane(500.0), gt_lane(503.0)]) == [[1, 0, 1]]


def test_metric_sums_images_and_states_merge_like_processes():
    images = [
        ([pred_lane(500.0), pred_lane(900.0, 0.4)], [gt_lane(502.0), gt_lane(200.0)]),
        ([], [gt_lane(700.0)]),
        ([pred_lane(100.0)], []),
    ]
    thresholds = (0.5, 0.75)
    whole = LLAMASMetric(thresholds)
    whole.update([p for p, _ in images], [g for _, g in images])
    first, second = LLAMASMetric(thresholds), LLAMASMetric(thresholds)
    first.update([images[0][0]], [images[0][1]])
    second.update([p for p, _ in images[1:]], [g for _, g in images[1:]])
    first.merge_state(second)
    assert first.compute() == whole.compute()
    result = whole.compute()
    expected = np.sum([counts(p, g, thresholds) for p, g in images], axis=0)
    assert [[result[k][n] for n in ("TP", "FP", "FN")] for k in ("0.5", "0.75")] == (
        expected.tolist()
    )
    assert "mF1" in result


def test_no_true_positive_gives_zero_scores():
    metric = LLAMASMetric()
    metric.update([[pred_lane(100.0)]], [[gt_lane(900.0)]])
    assert metric.compute()["0.5"] == {
        "TP": 0,
        "FP": 1,
        "FN": 1,
        "Precision": 0.0,
        "Recall": 0.0,
        "F1": 0.0,
    }
