"""CULane metric: hand-computed cases for every rule (both recipes) and the metric's result.

Most cases use vertical lanes that run through the whole image height (points from y = 700 up to
y = -100, beyond the image at both ends, so the round caps are outside). Each is a band of 31
pixel columns (width 30 drawn around the centre column) x 590 rows, so two such lanes d columns
apart (d <= 31) have IoU (31 - d) / (31 + d). Centres are at .5 so that truncation (Python
recipe) and rounding (C++ recipe) give the same column unless a test wants them to differ.
"""

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.interpolate import splev, splprep
from scipy.optimize import linear_sum_assignment

from src.metrics import (
    MF1_IOU_THRESHOLDS,
    CULaneMetric,
    culane_image_counts,
    culane_iou_matrix,
    matched_ious,
    threshold_key,
)
from src.metrics.culane import lane_masks
from src.metrics.culane_cpp import natural_spline_samples, scnn_match

ROWS = list(range(700, -101, -100))


def band(x: float) -> np.ndarray:
    """A vertical lane through the whole image at column ``x``."""
    return np.array([[x, y] for y in ROWS], dtype=np.float64)


def band_iou(d: int) -> float:
    return (31 - d) / (31 + d)


def counts(preds, gts, thresholds=(0.5,), evaluator="python"):
    return culane_image_counts(preds, gts, thresholds, evaluator).tolist()


def test_band_geometry():
    (mask,) = lane_masks([band(500.5)])
    assert mask.area == 31 * 590
    assert culane_iou_matrix([band(510.5)], [band(500.5)])[0, 0] == band_iou(10)


def test_tp_when_iou_above_threshold():
    # d = 10: IoU 21/41 = 0.512.
    assert counts([band(510.5)], [band(500.5)], (0.5, 0.55)) == [[1, 0, 0], [0, 1, 1]]


def test_strict_iou_threshold():
    iou = band_iou(10)
    assert counts([band(510.5)], [band(500.5)], (iou,)) == [[0, 1, 1]]
    assert counts([band(510.5)], [band(500.5)], (np.nextafter(iou, 0),)) == [[1, 0, 0]]


def test_hungarian_differs_from_greedy():
    # GT1 at 0, GT2 at +12; prediction A at +4, B at -8 (columns relative to 500.5).
    #            GT1            GT2
    # A   d=4: 27/35=0.771  d=8: 23/39=0.590
    # B   d=8: 23/39=0.590  d=20: 11/51=0.216
    # Greedy (best pair first) takes A-GT1 then B-GT2: 1 TP at 0.5, 1 TP at 0.6.
    # The assignment maximising total IoU takes A-GT2 + B-GT1 (1.18 > 0.99): 2 TP at 0.5 and
    # none at 0.6.
    gts = [band(500.5), band(512.5)]
    preds = [band(504.5), band(492.5)]
    ious = culane_iou_matrix(preds, gts)
    np.testing.assert_array_equal(ious, [[band_iou(4), band_iou(8)], [band_iou(8), band_iou(20)]])
    assert sorted(matched_ious(ious)) == [band_iou(8), band_iou(8)]
    assert counts(preds, gts, (0.5, 0.6)) == [[2, 0, 0], [0, 2, 2]]


def test_empty_predictions_and_empty_gt():
    gts = [band(300.5), band(900.5)]
    assert counts([], gts) == [[0, 0, 2]]
    assert counts(gts + [band(1200.5)], []) == [[0, 3, 0]]
    assert counts([], []) == [[0, 0, 0]]
    for evaluator in ("python", "cpp"):
        assert counts([], gts, evaluator=evaluator) == [[0, 0, 2]]
        assert counts(gts, [], evaluator=evaluator) == [[0, 2, 0]]


def test_unmatched_and_far_lanes():
    gts = [band(300.5), band(900.5)]
    preds = [band(302.5), band(1500.5), band(100.5)]
    assert counts(preds, gts) == [[1, 2, 1]]


def test_one_point_lanes():
    one_point = np.array([[300.0, 400.0]])
    # Python recipe: dropped (not a lane at all).
    assert counts([band(300.5)], [one_point, band(300.5)]) == [[1, 0, 0]]
    # C++ recipe: still a lane, with IoU 0 against everything.
    assert counts([band(300.5)], [one_point, band(300.5)], evaluator="cpp") == [[1, 0, 1]]
    assert counts([np.zeros((0, 2))], [band(300.5)], evaluator="cpp") == [[0, 1, 1]]


def test_repeated_consecutive_points_are_dropped():
    lane = band(500.5)
    repeated = np.concatenate([lane[:3], lane[2:3], lane[3:], lane[-1:]])
    for evaluator in ("python", "cpp"):
        assert culane_iou_matrix([repeated], [lane], evaluator)[0, 0] == 1.0
    # A lane that is one repeated point: dropped (Python), a dot (C++; IoU 0 with the band).
    dot = np.array([[500.0, 300.0], [500.0, 300.0]])
    assert counts([dot], [lane]) == [[0, 0, 1]]
    assert counts([dot], [lane], evaluator="cpp") == [[0, 1, 1]]


def test_lanes_outside_the_image():
    # Both entirely outside: 0 / 0 IoU, where the Python evaluator fails; here no match.
    outside = np.array([[-200.0, 100.0], [-150.0, 300.0], [-120.0, 500.0]])
    for evaluator in ("python", "cpp"):
        assert counts([outside], [outside], evaluator=evaluator) == [[0, 1, 1]]


def test_points_are_truncated_python_rounded_cpp():
    # 500.6 -> column 500 (truncation) in the Python recipe, 501 (rounding) in the C++ recipe.
    gt, pred = band(500.6), band(500.3)
    assert culane_iou_matrix([pred], [gt], "python")[0, 0] == 1.0
    assert culane_iou_matrix([pred], [gt], "cpp")[0, 0] == band_iou(1)


def test_non_finite_coordinates_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        counts([np.array([[1.0, 2.0], [np.nan, 3.0]])], [band(3.5)])


def test_cpp_matching_tolerance():
    # One GT lane, two predictions with IoU 0.5 and 0.505: the tool's Kuhn-Munkres treats
    # edges within 1e-2 of tight as tight and takes the first; the Hungarian optimum takes 0.505.
    similarity = np.array([[0.5, 0.505]])
    assert scnn_match(similarity) == [0]
    assert matched_ious(similarity.T, "cpp").tolist() == [0.5]
    assert matched_ious(similarity.T, "python").tolist() == [0.505]
    # More GT lanes than predictions: the tool swaps sides; the result is per GT lane.
    assert scnn_match(np.array([[0.9], [0.2]])) == [0, -1]
    assert scnn_match(np.array([[0.2], [0.9]])) == [-1, 0]
    # NaN (both lanes outside the image) never matches.
    assert scnn_match(np.array([[np.nan]])) == [-1]


def test_cpp_natural_spline_interpolates_and_is_natural():
    pts = np.array([[0, 0], [10, 10], [0, 20]], dtype=np.float32)
    out = natural_spline_samples(pts, 50)
    assert out.shape == (101, 2) and out.dtype == np.float32
    np.testing.assert_array_equal(out[[0, -1]], pts[[0, 2]])
    np.testing.assert_allclose(out[50], [10, 10], atol=1e-4)
    np.testing.assert_allclose(out[:51, 0], out[100:49:-1, 0], atol=1e-3)  # symmetric
    # Collinear points: a natural spline is the straight line.
    line = natural_spline_samples(np.array([[5, 0], [5, 7], [5, 30]], dtype=np.float32), 50)
    assert (line[:, 0] == 5).all()


def test_metric_thresholds_mf1_and_categories():
    metric = CULaneMetric(iou_thresholds=(0.5, 0.55), categories=("normal", "night"))
    gts = [band(500.5)]
    metric.update([[band(510.5)], [band(500.5)]], [gts, gts], ["normal", "night"])
    metric.update([[]], [gts], [None])
    result = metric.compute()
    assert result["0.5"] == {
        "TP": 2,
        "FP": 0,
        "FN": 1,
        "Precision": 1.0,
        "Recall": 2 / 3,
        "F1": 2 * (2 / 3) / (1 + 2 / 3),
    }
    assert result["0.55"]["TP"] == 1 and result["0.55"]["FP"] == 1 and result["0.55"]["FN"] == 2
    assert result["mF1"] == pytest.approx((result["0.5"]["F1"] + result["0.55"]["F1"]) / 2)
    assert result["categories"]["normal"]["0.5"]["TP"] == 1
    assert result["categories"]["normal"]["0.55"]["TP"] == 0
    assert result["categories"]["night"]["0.55"]["F1"] == 1.0
    assert set(result["categories"]["night"]) == {"0.5", "0.55", "mF1"}


def test_metric_single_threshold_and_zero_tp():
    metric = CULaneMetric()
    metric.update([[band(100.5)]], [[band(900.5)]])
    assert metric.compute() == {
        "0.5": {"TP": 0, "FP": 1, "FN": 1, "Precision": 0.0, "Recall": 0.0, "F1": 0.0}
    }


def test_metric_states_are_fixed_size_int64():
    metric = CULaneMetric(MF1_IOU_THRESHOLDS, categories=("a", "b", "c"))
    assert metric.counts.shape == (10, 3) and metric.counts.dtype == torch.int64
    assert metric.category_counts.shape == (3, 10, 3)
    assert metric._reductions["counts"] is not None


def test_metric_rejects_bad_arguments():
    with pytest.raises(ValueError, match="evaluator"):
        CULaneMetric(evaluator="matlab")
    with pytest.raises(ValueError, match="repeated IoU"):
        CULaneMetric(iou_thresholds=(0.5, 0.5))
    metric = CULaneMetric(categories=("normal",))
    with pytest.raises(ValueError, match="unknown category"):
        metric.update([[]], [[]], ["crowd"])
    with pytest.raises(ValueError, match="without any"):
        CULaneMetric().update([[]], [[]], ["normal"])


def test_threshold_keys():
    assert [threshold_key(t) for t in MF1_IOU_THRESHOLDS][:3] == ["0.5", "0.55", "0.6"]
    assert threshold_key(np.arange(0.5, 1.0, 0.05)[4]) == "0.7"
    assert threshold_key(0.75) == str(0.75)


def _full_canvas_counts(preds, gts, thresholds):
    """The definition written plainly: splprep samples, a full 590x1640 mask per lane with one
    cv2.line per segment, full-mask IoU, Hungarian assignment."""

    def mask(points):
        tck, u = splprep([points[:, 0], points[:, 1]], s=0, k=min(3, len(points) - 1))
        xs, ys = splev(np.linspace(0, 1, (len(u) - 1) * 5 + 1), tck)
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        img = np.zeros((590, 1640), dtype=np.uint8)
        for p, q in zip(pts[:-1], pts[1:], strict=True):
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, thickness=30)
        return img > 0

    pm, gm = [mask(p) for p in preds], [mask(g) for g in gts]
    ious = np.zeros((len(pm), len(gm)))
    for i, a in enumerate(pm):
        for j, b in enumerate(gm):
            union = (a | b).sum()
            ious[i, j] = (a & b).sum() / union if union else 0.0
    rows, cols = linear_sum_assignment(1 - ious)
    tp = [int((ious[rows, cols] > t).sum()) for t in thresholds]
    return [[t, len(pm) - t, len(gm) - t] for t in tp]


def _lane_strategy():
    def build(draw_values):
        y0, steps, xs = draw_values
        ys = y0 - np.cumsum(steps)
        return np.round(np.stack([np.array(xs[: len(ys)]), ys], axis=1), 2)

    return st.integers(2, 7).flatmap(
        lambda n: st.tuples(
            st.floats(300, 700),
            st.lists(st.floats(3, 120), min_size=n, max_size=n),
            st.lists(st.floats(-100, 1740), min_size=n, max_size=n),
        ).map(build)
    )


@settings(max_examples=25, deadline=None)
@given(st.lists(_lane_strategy(), max_size=3), st.lists(_lane_strategy(), max_size=3))
def test_equals_full_canvas_definition(preds, gts):
    thresholds = (0.1, 0.5, 0.9)
    assert counts(preds, gts, thresholds) == _full_canvas_counts(preds, gts, thresholds)
