"""scripts/check_dataset.py on clean and broken trees."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.data import culane, tusimple
from tests.data.lane_trees import lane_image, write_culane_tree, write_jpeg, write_tusimple_tree

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_dataset.py"


@pytest.fixture(scope="module")
def check_main():
    spec = importlib.util.spec_from_file_location("check_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_clean_tusimple_tree(tmp_path, check_main, capsys):
    write_tusimple_tree(tmp_path, per_file=2)
    assert check_main(["--dataset", "tusimple", "--root", str(tmp_path), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "split train: 4 samples, 4 images decoded" in out
    assert "image sizes: 1280x720: 4" in out and "OK: no problems found" in out


def test_broken_tusimple_tree_lists_every_problem(tmp_path, check_main, capsys):
    records = write_tusimple_tree(tmp_path, per_file=3)
    label = tmp_path / "label_data_0313.json"
    lines = label.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["lanes"][0] = bad["lanes"][0][:-2]
    lines[1] = json.dumps(bad)
    lines[2] = "{not json"
    label.write_text("\n".join(lines) + "\n")
    broken_image = tmp_path / records["label_data_0601.json"][0]["raw_file"]
    broken_image.write_bytes(b"\xff\xd8 truncated")
    missing_image = tmp_path / records["label_data_0531.json"][2]["raw_file"]
    missing_image.unlink()
    code = check_main(["--dataset", "tusimple", "--root", str(tmp_path), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{label}:2: lane 0 has 54 values but h_samples has 56" in out
    assert f"{label}:3: invalid JSON" in out
    assert f"cannot decode image {broken_image}" in out
    assert f"cannot read image {missing_image}" in out
    assert "FAILED: 4 problem(s)" in out


def test_culane_tree(tmp_path, check_main, capsys):
    written = write_culane_tree(tmp_path, {"train": 3, "val": 1, "test": 9})
    assert check_main(["--dataset", "culane", "--root", str(tmp_path), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "split test_split/test1_crowd: 1 samples" in out and "1640x590" in out
    label = (tmp_path / written["train"][1][0]).with_suffix(".lines.txt")
    label.write_text("1 2 3\n")
    assert (
        check_main(
            ["--dataset", "culane", "--root", str(tmp_path), "--split", "train", "--no-decode"]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert f"{label}:1: expected x y pairs" in out and "split train: 2 samples" in out


def test_missing_root(tmp_path, check_main, capsys):
    assert check_main(["--dataset", "culane", "--root", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_zero_byte_image_is_reported_not_a_crash(tmp_path, check_main, capsys):
    records = write_tusimple_tree(tmp_path, per_file=1)
    empty = tmp_path / records["label_data_0601.json"][0]["raw_file"]
    empty.write_bytes(b"")
    code = check_main(["--dataset", "tusimple", "--root", str(tmp_path), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED: 1 problem(s)" in out
    label = tmp_path / "label_data_0601.json"
    assert f"{label}:1: cannot decode image {empty}: the file is empty (0 bytes)" in out


def test_non_utf8_label_lines_are_reported_with_file_and_line(tmp_path, check_main, capsys):
    written = write_culane_tree(tmp_path, {"train": 2, "val": 1, "test": 9})
    label = (tmp_path / written["train"][0][0]).with_suffix(".lines.txt")
    label.write_bytes(b"1 2 3 4\n5 \xff6 7 8\n")
    args = ["--root", str(tmp_path), "--split", "train", "--no-decode"]
    assert check_main(["--dataset", "culane", *args]) == 1
    out = capsys.readouterr().out
    assert f"{label}:2: expected UTF-8 text, got byte 0xff at column 3" in out
    assert "split train: 1 samples" in out and "FAILED: 1 problem(s)" in out

    tusimple_root = tmp_path / "tusimple"
    write_tusimple_tree(tusimple_root, per_file=2)
    tusimple_label = tusimple_root / "label_data_0531.json"
    data = tusimple_label.read_bytes().replace(b'"lanes"', b'"la\xe9es"', 1)
    tusimple_label.write_bytes(data)
    args = ["--root", str(tusimple_root), "--split", "val", "--no-decode"]
    assert check_main(["--dataset", "tusimple", *args]) == 1
    out = capsys.readouterr().out
    assert f"{tusimple_label}:1: expected UTF-8 text, got byte 0xe9" in out
    assert "missing key" not in out and "split val: 1 samples" in out


def test_empty_label_file_is_reported(tmp_path, check_main, capsys):
    write_tusimple_tree(tmp_path, per_file=1)
    label = tmp_path / "label_data_0601.json"
    label.write_text("\n")
    code = check_main(["--dataset", "tusimple", "--root", str(tmp_path), "--no-decode"])
    out = capsys.readouterr().out
    assert code == 1 and f"{label}: label file is empty" in out
    assert "split train: 1 samples" in out and "FAILED: 1 problem(s)" in out


def test_wrong_size_image_is_reported_unless_size_any(tmp_path, check_main, capsys):
    records = write_tusimple_tree(tmp_path, per_file=1)
    small = tmp_path / records["label_data_0531.json"][0]["raw_file"]
    write_jpeg(small, lane_image(640, 360, []))
    args = ["--dataset", "tusimple", "--root", str(tmp_path), "--workers", "1"]
    assert check_main(args) == 1
    out = capsys.readouterr().out
    label = tmp_path / "label_data_0531.json"
    assert f"{label}:1: image {small} is 640x360, expected 1280x720" in out
    assert "image sizes: 640x360: 1" in out and "FAILED: 1 problem(s)" in out
    assert check_main([*args, "--size", "any"]) == 0
    capsys.readouterr()
    assert check_main([*args, "--split", "val", "--size", "640x360"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        check_main([*args, "--size", "big"])
    assert "expected WxH" in capsys.readouterr().err


def test_default_sizes_are_the_dataset_configs():
    conf = Path(__file__).resolve().parents[2] / "conf" / "dataset"
    for name, size in (("tusimple", tusimple.IMAGE_SIZE), ("culane", culane.IMAGE_SIZE)):
        cfg = OmegaConf.load(conf / f"{name}.yaml")
        assert (cfg.ori_w, cfg.ori_h) == size
