"""LLAMAS and CurveLanes prediction writers: file names, rows and scaling as the reference
writers, and the file scoring modules stay free of torch."""

import subprocess
import sys

import numpy as np

from src.lane import Lane
from src.metrics import (
    culane_lane_points,
    curvelanes_lane_points,
    llamas_lane_points,
    llamas_prediction_file,
    read_culane_lanes,
    write_curvelanes_prediction,
    write_llamas_prediction,
)


def vertical(x: float, top: float, bottom: float = 1.0) -> Lane:
    return Lane(np.array([[x, top], [x, (top + bottom) / 2], [x, bottom]]))


def test_llamas_file_name_is_the_last_two_parts_of_the_image_path():
    name = "color_images/valid/images-2014-12-22-12-35-10/1419283521_0744236000_color_rect.png"
    assert (
        llamas_prediction_file(name) == "images-2014-12-22-12-35-10/1419283521_0744236000.lines.txt"
    )


def test_llamas_points_rows_300_to_716_scaled_by_size_minus_one(tmp_path):
    (points,) = llamas_lane_points([vertical(0.5, 0.0)])
    assert len(points) == 417  # rows 300..716
    assert points[0].tolist() == [637.5, 716.0] and points[-1].tolist() == [637.5, 300.0]
    assert llamas_lane_points([vertical(1.2, 0.0)]) == []  # x >= 1 everywhere: no row
    path = write_llamas_prediction(tmp_path, "color_images/valid/rec/7_color_rect.png", [points])
    assert path == tmp_path / "rec" / "7.lines.txt"
    assert np.array_equal(read_culane_lanes(path)[0], points)


def test_curvelanes_points_use_the_image_size_and_cut_and_drop_one_point_lanes(tmp_path):
    short = vertical(0.25, 0.996, 0.999)  # one 8-px row of a 720-row image in its y range
    lanes = [vertical(0.25, 0.5), short]
    assert [len(p) for p in culane_lane_points(lanes, 1280, 720, 368)] == [44, 1]
    (points,) = curvelanes_lane_points(lanes, 1280, 720, 368)
    assert points[0].tolist() == [320.0, 712.0] and points[-1].tolist() == [320.0, 368.0]
    (points,) = curvelanes_lane_points([vertical(0.25, 0.0)], 2560, 1440, 640)
    assert points[0].tolist() == [640.0, 1432.0] and len(points) == 100
    path = write_curvelanes_prediction(tmp_path, "images/0a1b.jpg", [points, points[:1]])
    assert path == tmp_path / "images" / "0a1b.lines.txt"
    assert len(read_culane_lanes(path)) == 1


def test_file_scoring_modules_do_not_import_torch():
    code = (
        "import sys, src.metrics.files_llamas, src.metrics.files_curvelanes; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
