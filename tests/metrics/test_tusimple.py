"""TuSimple metric: hand-computed cases for every rule of the benchmark's lane.py."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from src.metrics import TuSimpleMetric, tusimple_f1, tusimple_image_scores
from src.metrics.tusimple import gt_thresholds

H4 = [100, 110, 120, 130]  # four rows, 10 px apart
NO = -2


def vertical(x: float, rows: int = 4) -> list[float]:
    return [x] * rows


def test_vertical_lane_threshold_is_20_pixels_strict():
    gt = [vertical(100)]
    assert tusimple_image_scores([vertical(119)], gt, H4) == (1.0, 0.0, 0.0)
    # |diff| = 20 is not < 20: every row wrong -> accuracy 0, the lane is missed.
    assert tusimple_image_scores([vertical(120)], gt, H4) == (0.0, 1.0, 1.0)


def test_angle_adjusted_threshold():
    # x = y: slope 1, threshold 20 / cos(45 deg) = 28.28 px.
    gt = [[100, 110, 120, 130]]
    assert gt_thresholds(np.array(gt, float), np.array(H4, float))[0] == pytest.approx(
        20 * math.sqrt(2)
    )
    shifted_25 = [[125, 135, 145, 155]]
    assert tusimple_image_scores(shifted_25, gt, H4) == (1.0, 0.0, 0.0)
    shifted_29 = [[129, 139, 149, 159]]
    assert tusimple_image_scores(shifted_29, gt, H4) == (0.0, 1.0, 1.0)
    # The slope uses only GT points with x >= 0; one point left -> 20 px.
    assert gt_thresholds(np.array([[NO, NO, NO, 120]], float), np.array(H4, float))[0] == 20.0


def test_missing_rows_compare_as_minus_100():
    gt = [[NO, NO, 100, 100]]
    # Rows missing on both sides count as correct.
    assert tusimple_image_scores([[NO, NO, 100, 100]], gt, H4) == (1.0, 0.0, 0.0)
    # A prediction without points still gets the 2 rows where GT is missing: 2/4 = 0.5.
    acc, fp, fn = tusimple_image_scores([[NO, NO, NO, NO]], gt, H4)
    assert (acc, fp, fn) == (0.5, 1.0, 1.0)


def test_best_prediction_per_gt_lane_without_one_to_one_matching():
    # Two GT lanes 5 px apart, one prediction between them: both matched, FP = 1 - 2 = -1.
    gt = [vertical(100), vertical(105)]
    assert tusimple_image_scores([vertical(102)], gt, H4) == (1.0, -1.0, 0.0)


def test_accuracy_below_085_is_a_miss():
    gt = [vertical(100, 20)]
    rows = list(range(100, 300, 10))
    pred_17 = [100] * 17 + [200] * 3  # 17/20 = 0.85 -> matched
    pred_16 = [100] * 16 + [200] * 4  # 16/20 = 0.80 -> missed
    assert tusimple_image_scores([pred_17], gt, rows) == (0.85, 0.0, 0.0)
    assert tusimple_image_scores([pred_16], gt, rows) == (0.8, 1.0, 1.0)


def test_more_than_4_gt_lanes():
    gts = [vertical(x) for x in (100, 300, 500, 700, 900)]
    # Four found, the fifth missed: the miss is forgiven and its accuracy 0 dropped.
    preds = [vertical(x) for x in (100, 300, 500, 700)]
    assert tusimple_image_scores(preds, gts, H4) == (1.0, 0.0, 0.0)
    # Three found, one half right (2/4 rows), one missed: FN 2 - 1 = 1 over 4; accuracy
    # (1 + 1 + 1 + 0.5 + 0 - 0) / 4.
    half = [500, 500, 50, 50]
    preds = [vertical(100), vertical(300), half, vertical(700)]
    gts = [vertical(x) for x in (100, 300, 500, 1100, 700)]
    assert tusimple_image_scores(preds, gts, H4) == (3.5 / 4, 1 / 4, 1 / 4)


def test_too_many_predictions():
    gt = [vertical(100)]
    three = [vertical(100), vertical(400), vertical(700)]  # n_gt + 2: scored
    assert tusimple_image_scores(three, gt, H4) == (1.0, 2 / 3, 0.0)
    four = three + [vertical(1000)]  # n_gt + 3: accuracy 0, FP 0, FN 1
    assert tusimple_image_scores(four, gt, H4) == (0.0, 0.0, 1.0)


def test_run_time_over_200_ms():
    gt, pred = [vertical(100)], [vertical(100)]
    assert tusimple_image_scores(pred, gt, H4, run_time=200.0) == (1.0, 0.0, 0.0)
    assert tusimple_image_scores(pred, gt, H4, run_time=200.01) == (0.0, 0.0, 1.0)
    assert tusimple_image_scores(pred, gt, H4, run_time=None) == (1.0, 0.0, 0.0)


def test_empty_predictions_and_empty_gt():
    gts = [vertical(100), vertical(300)]
    assert tusimple_image_scores([], gts, H4) == (0.0, 0.0, 1.0)
    assert tusimple_image_scores([vertical(5)], [], H4) == (0.0, 1.0, 0.0)
    assert tusimple_image_scores([vertical(5)] * 3, [], H4) == (0.0, 0.0, 1.0)  # 3 > 0 + 2
    assert tusimple_image_scores([], [], H4) == (0.0, 0.0, 0.0)


def test_lane_length_must_match_h_samples():
    with pytest.raises(ValueError, match="one x per h_sample"):
        tusimple_image_scores([[1, 2, 3]], [vertical(100)], H4)
    with pytest.raises(ValueError, match="one x per h_sample"):
        tusimple_image_scores([vertical(100)], [[1, 2]], H4)


def test_f1_as_clrnet():
    # FP 0.1, FN 0.2: P = 0.9, R = 0.9 / 1.1 = 9/11, F1 = 2PR / (P + R) = 6/7.
    assert tusimple_f1(0.1, 0.2) == pytest.approx(6 / 7)
    assert tusimple_f1(0.0, 0.0) == 1.0
    assert tusimple_f1(1.0, 0.0) == 0.0  # no true positives: the reference divides by zero


def test_metric_means_and_f1():
    metric = TuSimpleMetric()
    gt = [vertical(100), vertical(300)]
    metric.update(
        [[vertical(100), vertical(300)], [vertical(100)]],
        [gt, gt],
        [H4, H4],
        run_times=[5.0, 5.0],
    )
    metric.update([[vertical(100), vertical(300)]], [gt], [H4], run_times=[250.0])
    result = metric.compute()
    # images: (1, 0, 0), (0.5, 0, 0.5), (0, 0, 1)
    assert result["Accuracy"] == pytest.approx(1.5 / 3)
    assert result["FP"] == 0.0
    assert result["FN"] == pytest.approx(1.5 / 3)
    assert result["F1"] == pytest.approx(tusimple_f1(0.0, 0.5))
    assert set(result) == {"Accuracy", "FP", "FN", "F1"}


def test_metric_state_is_summed_and_empty_metric_is_zero():
    metric = TuSimpleMetric()
    assert metric.accuracy_sum.dtype == torch.float64
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert all(v == 0.0 for v in metric.compute().values())


def _slow_reference(pred, gt, ys, run_time):
    """A direct, lane-by-lane transcription of the definition (independent of the vectorised
    implementation) used as an oracle."""
    ys = np.asarray(ys, float)
    if (run_time is not None and run_time > 200) or len(pred) > len(gt) + 2:
        return 0.0, 0.0, 1.0
    best = []
    for g in gt:
        g = np.asarray(g, float)
        pts = g >= 0
        if pts.sum() > 1:
            k = np.polyfit(ys[pts], g[pts], 1)[0]
            thresh = 20 / math.cos(math.atan(k))
        else:
            thresh = 20.0
        accs = []
        for p in pred:
            p = np.where(np.asarray(p, float) >= 0, p, -100)
            gg = np.where(g >= 0, g, -100)
            accs.append(np.mean(np.abs(p - gg) < thresh))
        best.append(max(accs) if accs else 0.0)
    matched = sum(a >= 0.85 for a in best)
    fn = len(gt) - matched
    if len(gt) > 4 and fn > 0:
        fn -= 1
    s = sum(best) - (min(best) if len(gt) > 4 else 0)
    d = max(min(4, len(gt)), 1)
    return s / d, ((len(pred) - matched) / len(pred) if pred else 0.0), fn / d


xs_value = st.one_of(st.just(-2), st.integers(0, 1279))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda rows: st.tuples(
            st.lists(st.lists(xs_value, min_size=rows, max_size=rows), max_size=7),
            st.lists(st.lists(xs_value, min_size=rows, max_size=rows), max_size=6),
            st.just(list(range(160, 160 + 10 * rows, 10))),
            st.one_of(st.none(), st.sampled_from([0.0, 199.0, 200.0, 201.0])),
        )
    )
)
def test_matches_a_direct_transcription(case):
    pred, gt, ys, run_time = case
    ours = tusimple_image_scores(pred, gt, ys, run_time)
    expected = _slow_reference(pred, gt, ys, run_time)
    assert ours == pytest.approx(expected, abs=1e-12)
