"""CurveLanes reader: lists, string coordinates, the three image sizes and their crops, more
than 4 lanes, errors naming file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from src.data import DatasetError
from src.data.curvelanes import CROP_OFFSETS, read_curvelanes_split
from src.data.formats import read_format_split
from tests.data.lane_trees import write_jpeg


def write_image(root, split: str, name: str, size: tuple[int, int]) -> None:
    write_jpeg(root / split / "images" / f"{name}.jpg", np.zeros((size[1], size[0], 3), np.uint8))


def write_label(root, split: str, name: str, lines) -> None:
    path = root / split / "labels" / f"{name}.lines.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"Lines": lines}))


def write_list(root, split: str, names: list[str]) -> None:
    (root / split / f"{split}.txt").write_text("".join(f"images/{n}.jpg\n" for n in names))


def points(*xy) -> list[dict]:
    return [{"x": x, "y": y} for x, y in xy]


def test_reads_the_official_layout_with_three_sizes(curvelanes_tree):
    valid = read_curvelanes_split(curvelanes_tree, "valid")
    assert len(valid) == 6 and len(read_curvelanes_split(curvelanes_tree, "train")) == 4
    sizes = {}
    for sample in valid:
        assert sample.img_name.startswith("images/") and sample.img_name.endswith(".jpg")
        assert sample.source.endswith(f"valid.txt:{valid.index(sample) + 1}")
        sizes[sample.ori_size] = sample.cut_height
        lanes, train_lanes = sample.load_lanes()
        assert all(len(lane) >= 2 for lane in lanes) and len(train_lanes) <= len(lanes)
    assert sizes == {(h, w): cut for (w, h), cut in CROP_OFFSETS.items()}
    assert sizes == {(1440, 2560): 640, (660, 1570): 180, (720, 1280): 368}
    assert max(len(s.load_lanes()[0]) for s in valid) > 4
    test = read_curvelanes_split(curvelanes_tree, "test")
    assert [s.load_lanes() for s in test] == [((), ())] * 2 and test[0].cut_height == 640


def test_string_coordinates_file_order_and_one_point_lanes(tmp_path):
    write_image(tmp_path, "valid", "a", (1570, 660))
    lines = [
        points(("100.5", "659.0"), ("120.25", "500.0"), ("130", "400")),
        points(("900.0", "300.0"), ("800.0", "659.0")),  # top -> bottom: kept in file order
        points(("50.0", "600.0")),  # one point: a GT lane of the metric, not trained on
        [],  # no points: not a lane
        points((700, 650), (710.5, 600), (720, 550)),  # numbers are read too
    ]
    write_label(tmp_path, "valid", "a", lines)
    write_list(tmp_path, "valid", ["a"])
    (sample,) = read_format_split("curvelanes", tmp_path, "val")
    lanes, train_lanes = sample.load_lanes()
    assert [lane.tolist() for lane in lanes] == [
        [[100.5, 659.0], [120.25, 500.0], [130.0, 400.0]],
        [[900.0, 300.0], [800.0, 659.0]],
        [[50.0, 600.0]],
        [[700.0, 650.0], [710.5, 600.0], [720.0, 550.0]],
    ]
    # Training: lanes with at least 3 points, top -> bottom (CULane's training filter).
    assert [lane[:, 1].tolist() for lane in train_lanes] == [
        [400.0, 500.0, 659.0],
        [550.0, 600.0, 650.0],
    ]
    assert (sample.ori_size, sample.cut_height) == ((660, 1570), 180)


def test_errors_name_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match="SoulmateB/CurveLanes"):
        read_curvelanes_split(tmp_path / "missing", "train")
    with pytest.raises(DatasetError, match=r"valid/valid.txt is missing"):
        read_curvelanes_split(tmp_path, "valid")
    with pytest.raises(DatasetError, match="unknown CurveLanes split 'dev'"):
        read_curvelanes_split(tmp_path, "dev")
    for name, size in (("a", (1280, 720)), ("b", (1920, 1080))):
        write_image(tmp_path, "valid", name, size)
        write_label(tmp_path, "valid", name, [points(("1", "2"), ("3", "4"))])
    list_path = tmp_path / "valid" / "valid.txt"
    write_list(tmp_path, "valid", ["a", "b"])
    with pytest.raises(DatasetError, match=rf"{list_path}:2: image .* is 1920x1080; CurveLanes"):
        read_curvelanes_split(tmp_path, "valid")
    write_list(tmp_path, "valid", ["a", "c"])
    with pytest.raises(DatasetError, match=rf"{list_path}:2: label file .*c.lines.json is missing"):
        read_curvelanes_split(tmp_path, "valid")
    write_label(tmp_path, "valid", "a", [points(("1", "2"), ("nan", "4"))])
    label = tmp_path / "valid" / "labels" / "a.lines.json"
    with pytest.raises(DatasetError, match=rf"{label}:1: Lines\[0\]\[1\].x: expected a finite"):
        read_curvelanes_split(tmp_path, "valid")


def test_missing_image_leaves_its_size_unknown_for_the_dataset_to_report(tmp_path):
    write_label(tmp_path, "valid", "a", [points(("1", "2"), ("3", "4"))])
    write_list(tmp_path, "valid", ["a"])
    (sample,) = read_curvelanes_split(tmp_path, "valid")
    assert sample.ori_size is None and sample.cut_height is None
