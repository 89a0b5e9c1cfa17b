"""Label values that parse but cannot be right are refused before training, naming file:line:
TuSimple rows out of order, points far outside the image, a training split without a usable
lane; an image labelled twice is logged with the count. scripts/check_dataset.py reports the
same problems."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest

from src.data import DatasetError, build_dataset
from tests.data.lane_trees import (
    culane_config,
    tusimple_config,
    write_culane_tree,
    write_tusimple_tree,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_dataset.py"


def _edit_labels(root: Path, name: str, edit) -> None:
    """Rewrite every record of TuSimple label file ``name`` with ``edit(record)``."""
    path = root / name
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record in records:
        edit(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _check_dataset(args: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("check_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args)


def _reverse_rows(record: dict) -> None:
    record["h_samples"] = record["h_samples"][::-1]
    record["lanes"] = [xs[::-1] for xs in record["lanes"]]


def test_unsorted_h_samples_are_refused_by_training_and_check_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_tusimple_tree(tmp_path, per_file=2)
    _edit_labels(tmp_path, "label_data_0601.json", _reverse_rows)
    # before: accepted; the lanes' points were read bottom-up and the targets built from them
    with pytest.raises(DatasetError, match="label_data_0601.json:1: h_samples must increase"):
        build_dataset(tusimple_config(tmp_path), "train", training=True)
    args = ["--dataset", "tusimple", "--root", str(tmp_path), "--workers", "1", "--no-decode"]
    assert _check_dataset([*args, "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "label_data_0601.json:1: h_samples must increase strictly" in out
    assert "label_data_0601.json:2: h_samples must increase strictly" in out


def test_tusimple_points_far_outside_the_image_are_named(tmp_path: Path) -> None:
    write_tusimple_tree(tmp_path, per_file=2)

    def far(record: dict) -> None:
        record["lanes"] = [[1e12 if x >= 0 else x for x in xs] for xs in record["lanes"]]

    for name in ("label_data_0313.json", "label_data_0601.json"):
        _edit_labels(tmp_path, name, far)
    # before: trained without a word to the no-lane model (F1 0.667, Accuracy 0)
    with pytest.raises(DatasetError) as info:
        build_dataset(tusimple_config(tmp_path), "train", training=True)
    message = str(info.value)
    assert "label_data_0313.json:1: lane 0 has x = 1e+12" in message
    assert "far outside the 1280x720 image" in message and "accepted up to 2560" in message


def test_points_just_past_the_border_are_accepted(tmp_path: Path) -> None:
    write_tusimple_tree(tmp_path, per_file=2)

    def past_border(record: dict) -> None:
        record["lanes"][0] = [1300 if x >= 0 else x for x in record["lanes"][0]]

    _edit_labels(tmp_path, "label_data_0313.json", past_border)
    assert len(build_dataset(tusimple_config(tmp_path), "train", training=True)) == 4


def test_a_training_split_without_a_usable_lane_is_refused(tmp_path: Path) -> None:
    write_tusimple_tree(tmp_path, per_file=2)

    def off_image(record: dict) -> None:  # within the tolerance, but right of the image
        record["lanes"] = [[1500 if x >= 0 else x for x in xs] for xs in record["lanes"]]

    for name in ("label_data_0313.json", "label_data_0601.json", "label_data_0531.json"):
        _edit_labels(tmp_path, name, off_image)
    with pytest.raises(DatasetError, match=r"train.*no usable lane in its 4 samples"):
        build_dataset(tusimple_config(tmp_path), "train", training=True)
    # a split only scored (not trained on) may hold no lane
    assert len(build_dataset(tusimple_config(tmp_path), "val", training=False)) == 2


def test_a_twice_labelled_image_is_logged_with_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = write_tusimple_tree(tmp_path, per_file=2)
    again = records["label_data_0313.json"][1]
    with (tmp_path / "label_data_0601.json").open("a") as label:
        label.write(json.dumps(again) + "\n")
    with caplog.at_level(logging.WARNING):
        assert len(build_dataset(tusimple_config(tmp_path), "train", training=True)) == 5
    assert "1 image(s) labelled more than once" in caplog.text
    assert "label_data_0601.json:3 (first at " in caplog.text


def test_culane_points_far_outside_the_image_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tree = write_culane_tree(tmp_path, counts={"train": 2, "val": 1, "test": 9})
    img_name, _ = tree["train"][1]
    label = (tmp_path / img_name).with_suffix(".lines.txt")
    label.write_text(label.read_text() + "100 580 1e12 300\n")
    with pytest.raises(DatasetError, match=r"\.lines\.txt:\d+: point \(1e\+12, 300\)"):
        build_dataset(culane_config(tmp_path), "train", training=True)
    args = ["--dataset", "culane", "--root", str(tmp_path), "--workers", "1", "--no-decode"]
    assert _check_dataset([*args, "--split", "train"]) == 1
    assert "far outside the 1640x590 image" in capsys.readouterr().out


def test_a_root_that_is_a_file_and_a_label_file_that_is_a_directory_say_so(tmp_path: Path) -> None:
    root = tmp_path / "tusimple"
    root.write_text("not a folder")
    # before: "TuSimple root ... does not exist" for a path that exists
    with pytest.raises(DatasetError, match="tusimple is a file, not a directory"):
        build_dataset(tusimple_config(root), "train", training=True)
    root.unlink()
    write_tusimple_tree(root, per_file=1)
    (root / "label_data_0531.json").unlink()
    (root / "label_data_0531.json").mkdir()
    with pytest.raises(DatasetError, match=r"label_data_0531.json \(is a directory, not a file\)"):
        build_dataset(tusimple_config(root), "val", training=False)
