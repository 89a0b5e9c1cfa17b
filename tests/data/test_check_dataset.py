"""scripts/check_dataset.py on clean and broken trees."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.data.lane_trees import write_culane_tree, write_tusimple_tree

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
