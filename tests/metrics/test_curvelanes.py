"""CurveLanes lane metric: the rules and CondLaneNet's quirks, on hand-made lanes.

Equality with ``LaneMetricCore`` image by image is in test_golden_benchmarks.py.
"""

import sys

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from src.metrics import CurveLanesMetric, curvelanes_image_counts, curvelanes_summary
from src.metrics.curvelanes import canvas_points, curvelanes_lane_mask, spline_samples
from src.metrics.raster import iou_matrix

SIZE = (1440, 2560)  # (height, width): canvas pixels are 2560 / 224 x 1440 / 224 image pixels


def lane(x0: float, slope: float = 0.0, size=SIZE, n: int = 12) -> np.ndarray:
    """A lane bottom -> top over the lower half of the image."""
    height = size[0]
    ys = np.linspace(height - 1, height / 2, n)
    return np.stack([x0 + slope * (height - 1 - ys), ys], axis=1)


def counts(preds, gts, thresholds=(0.5,), size=SIZE):
    return curvelanes_image_counts(preds, gts, size, thresholds).tolist()


def test_coordinates_are_divided_by_the_image_size_over_224():
    points = canvas_points(np.array([[2560.0, 1440.0], [1280.0, 720.0]]), SIZE)
    assert points.tolist() == [[224.0, 224.0], [112.0, 112.0]]
    # Divided by the ratio (not multiplied by 224 / H), as the reference does: the bottom of a
    # 660-row image lands just above 224 and truncates to 223.
    points = canvas_points(np.array([[1570.0, 660.0]]), (660, 1570))
    assert points.tolist() == [[224.0, 223.99999999999997]]


def test_two_points_are_joined_by_samples_every_unit_of_chord():
    samples = spline_samples(np.array([[10.0, 200.0], [13.0, 196.0]]))  # chord 5
    assert samples.tolist() == [
        [10.0, 200.0],
        [10.6, 199.2],
        [11.2, 198.4],
        [11.8, 197.6],
        [12.4, 196.8],
        [13.0, 196.0],  # the last key point
    ]


def test_spline_is_the_natural_cubic_spline_in_chord_length():
    points = np.array([[20.0, 210.0], [35.0, 160.0], [70.0, 120.0], [120.0, 95.0], [150.0, 90.0]])
    samples = spline_samples(points)
    chords = np.sqrt((np.diff(points, axis=0) ** 2).sum(axis=1))
    knots = np.concatenate([[0.0], np.cumsum(chords)])
    t = np.concatenate([k + np.arange(np.ceil(h)) for k, h in zip(knots, chords, strict=False)])
    reference = CubicSpline(knots, points, bc_type="natural")(t)
    assert len(samples) == len(t) + 1
    assert samples[:-1] == pytest.approx(reference, abs=1e-9)
    assert samples[-1].tolist() == points[-1].tolist()


def test_samples_are_truncated_not_rounded():
    def mask_at(canvas_x: float) -> np.ndarray:
        x = canvas_x * 2560 / 224
        drawn = curvelanes_lane_mask(np.array([[x, 0.0], [x, 1439.0]]), SIZE)
        full = np.zeros((224, 224), dtype=np.uint8)
        full[:, drawn.x0 : drawn.x1] = drawn.mask
        return full

    assert np.array_equal(mask_at(1.9), mask_at(1.0))
    assert not np.array_equal(mask_at(1.9), mask_at(2.0))


def test_thresholds_are_strict():
    gt = lane(1000.0, 0.4)
    ious = iou_matrix([curvelanes_lane_mask(gt, SIZE)], [curvelanes_lane_mask(gt + [40, 0], SIZE)])
    iou = ious[0, 0]
    assert 0 < iou < 1
    assert counts([gt + [40, 0]], [gt], (iou, np.nextafter(iou, 0))) == [[0, 1, 1], [1, 0, 0]]
    assert counts([gt], [gt], (0.999, 1.0)) == [[1, 0, 0], [0, 1, 1]]  # identical: IoU 1


def test_one_point_ground_truth_counts_but_never_matches():
    point = np.array([[1000.0, 1400.0]])
    assert counts([lane(1000.0)], [point]) == [[0, 1, 1]]
    assert counts([], [point, np.zeros((0, 2))]) == [[0, 0, 1]]  # lanes without points: none


def test_predictions_with_fewer_than_two_points_are_dropped():
    assert counts([np.array([[1000.0, 1400.0]])], [lane(1000.0)]) == [[0, 0, 1]]


def test_repeated_points():
    gt = lane(900.0, 0.2)
    pred = lane(905.0, 0.2)
    repeated = np.insert(pred, 4, pred[4], axis=0)
    # The reference fails on NaN; here repeated points are removed before the spline.
    assert counts([repeated], [gt], (0.5, 0.9)) == counts([pred], [gt], (0.5, 0.9))
    # One point twice: the reference draws nothing, and the lane still counts.
    pair = np.array([[900.0, 1400.0], [900.0, 1400.0]])
    assert counts([pair], [gt]) == [[0, 1, 1]]
    assert counts([gt], [pair]) == [[0, 1, 1]]


def test_lanes_outside_the_image():
    outside = lane(-3000.0)
    assert counts([outside], [lane(500.0)]) == [[0, 1, 1]]
    assert counts([outside], [np.array([[10.0, 10.0]])]) == [[0, 1, 1]]  # both empty: IoU 0


def test_more_than_four_lanes_match_one_to_one():
    gts = [lane(x, 0.3) for x in (200.0, 600.0, 1000.0, 1400.0, 1800.0, 2200.0)]
    preds = [g + [10, 0] for g in gts] + [gts[0] + [15, 0]]
    assert counts(preds, gts) == [[6, 1, 0]]


def test_summary_uses_the_reference_epsilon():
    eps = sys.float_info.epsilon
    (result,) = curvelanes_summary(np.array([[[3, 1, 2]]])[0], (0.5,)).values()
    precision, recall = 3 / (4 + eps), 3 / (5 + eps)
    assert result == {
        "TP": 3,
        "FP": 1,
        "FN": 2,
        "Precision": precision,
        "Recall": recall,
        "F1": 2 * precision * recall / (precision + recall + eps),
    }
    (zero,) = curvelanes_summary(np.array([[0, 2, 2]]), (0.5,)).values()
    assert (zero["Precision"], zero["Recall"], zero["F1"]) == (0.0, 0.0, 0.0)


def test_metric_takes_each_image_size_and_merges_like_processes():
    small = (720, 1280)
    images = [
        ([lane(1000.0, 0.3)], [lane(1004.0, 0.3)], SIZE),
        ([lane(500.0, 0.1, small)], [lane(503.0, 0.1, small), lane(900.0, 0.0, small)], small),
        ([], [lane(300.0, 0.0, (660, 1570))], (660, 1570)),
    ]
    whole = CurveLanesMetric((0.5, 0.8))
    whole.update(*[list(column) for column in zip(*images, strict=True)])
    first, second = CurveLanesMetric((0.5, 0.8)), CurveLanesMetric((0.5, 0.8))
    first.update([images[0][0]], [images[0][1]], [images[0][2]])
    second.update(*[list(column) for column in zip(*images[1:], strict=True)])
    first.merge_state(second)
    assert first.compute() == whole.compute()
    expected = np.sum([counts(p, g, (0.5, 0.8), s) for p, g, s in images], axis=0)
    result = whole.compute()
    assert [[result[k][n] for n in ("TP", "FP", "FN")] for k in ("0.5", "0.8")] == (
        expected.tolist()
    )
    assert "mF1" in result
