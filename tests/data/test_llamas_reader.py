"""LLAMAS reader: the official tree layout, the four-lane ground truth, errors, and the
dataset built on it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from src.data import DatasetError, build_dataset
from src.data.config import DatasetConfig
from src.data.llamas import read_llamas_split
from src.metrics import read_llamas_label
from tests.data.lane_trees import SRLANE_TARGETS


def llamas_config(root, **overrides) -> DatasetConfig:
    values = dict(name="llamas", root=str(root), ori_w=1276, ori_h=717, cut_height=300, max_lanes=4)
    values.update(overrides)
    return DatasetConfig(**values)


def marker(start, end, z):
    return {
        "pixel_start": {"x": start[0], "y": start[1]},
        "pixel_end": {"x": end[0], "y": end[1]},
        "world_start": {"x": 0.0, "y": 1.5, "z": z},
        "world_end": {"x": 0.0, "y": 1.5, "z": z + 3.0},
    }


def write_label(root, split: str, name: str, lanes: list[dict]) -> None:
    path = root / "labels" / split / "rec" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"projection_matrix": [], "lanes": lanes}, indent=2))


def test_reads_the_official_layout(llamas_tree):
    train = read_llamas_split(llamas_tree, "train")
    valid = read_llamas_split(llamas_tree, "valid")
    assert len(train) == 4 and len(valid) == 5
    assert [s.img_path for s in read_llamas_split(llamas_tree, "val")] == [
        s.img_path for s in valid
    ]
    for sample in train + valid:
        assert sample.img_name.startswith("color_images/")
        assert sample.img_name.endswith("_color_rect.png")
        assert (llamas_tree / sample.img_name).is_file()
        assert sample.source.endswith(".json") and sample.ori_size == (717, 1276)
        lanes, train_lanes = sample.load_lanes()
        official = read_llamas_label(sample.label_path)
        assert len(lanes) == len(official.lanes) >= 1
        assert all(np.array_equal(a, b) for a, b in zip(lanes, official.lanes, strict=True))
        for lane in lanes:  # the benchmark's rows: 300..716, every row once
            assert lane[0, 1] >= 300 and lane[-1, 1] <= 716 and np.all(np.diff(lane[:, 1]) == 1)
        assert [lane[0, 0] for lane in train_lanes] == sorted(lane[0, 0] for lane in train_lanes)
    (test,) = read_llamas_split(llamas_tree, "test")
    assert test.load_lanes() == ((), ()) and test.img_name.startswith("color_images/test/")


def test_lane_with_markers_only_above_row_300_reaches_the_image_bottom(tmp_path):
    far = [marker((700, 290), (705, 280), 40.0), marker((712, 268), (716, 260), 60.0)]
    near = [marker((400, 700), (420, 680), 8.0), marker((450, 640), (465, 620), 14.0)]
    write_label(
        tmp_path,
        "valid",
        "a",
        [{"lane_id": "l0", "markers": near}, {"lane_id": "r0", "markers": far}],
    )
    (sample,) = read_llamas_split(tmp_path, "valid")
    lanes, train_lanes = sample.load_lanes()
    far_gt = lanes[1]
    assert far_gt[0, 1] == 300 and far_gt[-1, 1] == 716  # extended to the bottom
    assert train_lanes[1][0, 1] == 260  # training keeps the rows above 300 too


def test_errors_name_what_to_get_and_where(tmp_path):
    with pytest.raises(DatasetError, match="unsupervised-llamas.com"):
        read_llamas_split(tmp_path / "missing", "train")
    with pytest.raises(DatasetError, match="unknown LLAMAS split 'dev'"):
        read_llamas_split(tmp_path, "dev")
    with pytest.raises(DatasetError, match="has no samples under"):
        read_llamas_split(tmp_path, "train")
    good = [marker((400, 700), (420, 680), 8.0), marker((450, 640), (465, 620), 14.0)]
    bad = [marker((400, 700), (420, 680), 8.0), marker((450, "x"), (465, 620), 14.0)]
    write_label(tmp_path, "train", "a", [{"lane_id": "l0", "markers": good}])
    write_label(tmp_path, "train", "b", [{"lane_id": "l0", "markers": bad}])
    label = tmp_path / "labels" / "train" / "rec" / "b.json"
    line = label.read_text().splitlines().index('            "y": "x"') + 1
    with pytest.raises(DatasetError) as err:
        read_llamas_split(tmp_path, "train")
    assert str(err.value).startswith(f"{label}:{line}: lanes[0].markers[1].pixel_start.y:")


def test_dataset_items(llamas_tree):
    cfg = llamas_config(llamas_tree)
    train = build_dataset(cfg, "train", True, 1, SRLANE_TARGETS)
    item = train[(0, 2)]
    assert tuple(item["img"].shape) == (3, 320, 800)
    assert int((item["gt_lane"][:, 1] == 1).sum()) >= 1
    val = build_dataset(cfg, "val", training=False)
    sample = val.samples[0]
    meta = val[0]["meta"]
    assert meta["ori_size"] == (717, 1276) and meta["cut_height"] == 300
    assert all(
        np.array_equal(a, b) for a, b in zip(meta["lanes"], sample.load_lanes()[0], strict=True)
    )


def test_missing_image_is_reported_with_its_label(llamas_tree, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(llamas_tree, root)
    sample = read_llamas_split(root, "valid")[1]
    (root / sample.img_name).unlink()
    with pytest.raises(DatasetError, match=f"listed at {sample.source}"):
        build_dataset(llamas_config(root), "valid", training=False)


def test_parallel_label_check_reports_the_first_bad_label(llamas_tree, tmp_path, monkeypatch):
    from src.data import llamas

    root = shutil.copytree(llamas_tree, tmp_path / "copy")
    labels = llamas.files_under(root / "labels" / "train")
    labels[1].write_text('{"lanes": 5, "projection_matrix": []}')
    labels[3].write_text("{")
    monkeypatch.setattr(llamas, "PARALLEL_FROM", 0)
    with pytest.raises(DatasetError, match=rf"{labels[1]}:1: lanes: expected a list"):
        llamas.check_labels(labels, workers=2)
    llamas.check_labels(labels[:1] + labels[2:3], workers=2)
