"""Prediction writers: values, formats and file layout as the reference writers produce them."""

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from src.lane import Lane
from src.metrics import (
    culane_label_name,
    culane_lane_points,
    read_culane_lanes,
    tusimple_lane_xs,
    write_culane_prediction,
    write_tusimple_predictions,
)

# A straight lane in normalised coordinates: x = 0.2 + 0.5 * (y - 0.4) for y in [0.4, 0.9].
STRAIGHT = Lane(np.array([[0.2, 0.4], [0.25, 0.5], [0.3, 0.6], [0.45, 0.9]]))


def test_tusimple_lane_xs_truncates_and_marks_missing_rows():
    # y = h / 720; x = (0.2 + 0.5 * (y - 0.4)) * 1280, truncated: 290 -> 257.8, 370 -> 328.9,
    # 500 -> 444.4, 640 -> 568.9. Rows outside [0.4 - 0.01, 0.9 + 0.01] (160, 710) have no point.
    (xs,) = tusimple_lane_xs([STRAIGHT], [160, 290, 370, 500, 640, 710], 1280, 720)
    assert xs == [-2, 257, 328, 444, 568, -2]
    assert all(isinstance(x, int) for x in xs)


def test_tusimple_negative_x_is_missing_and_x_beyond_width_is_kept():
    lane = Lane(np.array([[-0.1, 0.3], [0.5, 0.6], [1.2, 0.95]]))
    (xs,) = tusimple_lane_xs([lane], [216, 432, 684], 1280, 720)
    assert xs[0] == -2
    assert xs[2] > 1280


def test_write_tusimple_predictions(tmp_path):
    path = write_tusimple_predictions(
        tmp_path / "out" / "pred.json",
        [
            {"raw_file": "clips/a/20.jpg", "lanes": [[1, -2, 3]], "run_time": 1.0},
            {"raw_file": "clips/b/20.jpg", "lanes": [], "run_time": 12.5},
        ],
    )
    text = path.read_text()
    assert text == (
        '{"raw_file": "clips/a/20.jpg", "lanes": [[1, -2, 3]], "run_time": 1.0}\n'
        '{"raw_file": "clips/b/20.jpg", "lanes": [], "run_time": 12.5}'
    )
    assert [json.loads(line)["run_time"] for line in text.splitlines()] == [1.0, 12.5]


def test_culane_lane_points_rows_order_and_range():
    ori_w, ori_h, cut = 1640, 590, 270
    (pts,) = culane_lane_points([STRAIGHT], ori_w, ori_h, cut)
    rows = np.arange(cut, ori_h, 8) / ori_h
    kept = rows[(rows >= 0.39) & (rows <= 0.91)]
    np.testing.assert_allclose(pts[:, 1], (kept * ori_h)[::-1], atol=1e-5)  # bottom -> top
    np.testing.assert_allclose(
        pts[:, 0], (0.2 + 0.5 * (pts[:, 1] / ori_h - 0.4)) * ori_w, atol=1e-4
    )
    # Coordinates are exactly what the 5-decimal text reads back as.
    assert all(float(f"{v:.5f}") == v for v in pts.ravel())


def test_culane_lane_points_drops_points_outside_and_empty_lanes():
    leaving = Lane(np.array([[0.9, 0.5], [1.1, 0.95]]))  # crosses x = 1 (right border)
    above = Lane(np.array([[0.5, 0.05], [0.5, 0.2]]))  # entirely above the cut
    pts = culane_lane_points([leaving, above], 1640, 590, 270)
    assert len(pts) == 1
    assert (pts[0][:, 0] < 1640).all() and (pts[0][:, 0] >= 0).all()


def test_write_culane_prediction_layout_and_read_back(tmp_path):
    points = culane_lane_points(
        [STRAIGHT, Lane(np.array([[0.6, 0.5], [0.7, 0.95]]))], 1640, 590, 270
    )
    path = write_culane_prediction(
        tmp_path, "/driver_37_30frame/05181432_0203.MP4/00000.jpg", points
    )
    assert path == tmp_path / "driver_37_30frame/05181432_0203.MP4/00000.lines.txt"
    lines = path.read_text().split("\n")
    assert len(lines) == 2 and not path.read_text().endswith("\n")
    assert all(len(v.split(".")[1]) == 5 for v in lines[0].split())
    back = read_culane_lanes(path)
    assert len(back) == 2
    for a, b in zip(back, points, strict=True):
        np.testing.assert_array_equal(a, b)


def test_write_culane_prediction_without_lanes_is_an_empty_file(tmp_path):
    path = write_culane_prediction(tmp_path, "driver_00/x.MP4/00030.jpg", [])
    assert path.read_text() == ""
    assert read_culane_lanes(path) == []


def test_label_names():
    assert culane_label_name("/driver_37_30frame/x.MP4/00000.jpg") == (
        "driver_37_30frame/x.MP4/00000.lines.txt"
    )
    assert culane_label_name("driver_37_30frame/x.MP4/00000.png") == (
        "driver_37_30frame/x.MP4/00000.lines.txt"
    )


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1640, allow_nan=False))
def test_five_decimal_round_trip_is_stable(value):
    once = float(f"{value:.5f}")
    assert f"{once:.5f}" == f"{value:.5f}"
