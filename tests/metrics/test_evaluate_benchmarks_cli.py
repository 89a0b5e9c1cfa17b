"""scripts/evaluate.py llamas / curvelanes on files written by the writers equals the in-loop
metrics fed with the writers' points, on synthetic trees in the official layouts; missing and
bad files as the CULane command handles them."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.data.curvelanes import read_curvelanes_split
from src.data.llamas import read_llamas_split
from src.lane import Lane
from src.metrics import (
    CurveLanesMetric,
    LLAMASMetric,
    curvelanes_lane_points,
    llamas_lane_points,
    threshold_key,
    write_curvelanes_prediction,
    write_llamas_prediction,
)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "evaluate.py"
THRESHOLDS = ("0.5", "0.7", "0.9")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.fixture(scope="module")
def evaluate_main():
    """The command's ``main`` in this process (the error cases need no fresh interpreter)."""
    spec = importlib.util.spec_from_file_location("evaluate_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_main(main, capsys, *args: str) -> subprocess.CompletedProcess:
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def predicted(lanes, width: float, height: float, rng: np.random.Generator) -> list[Lane]:
    """Lanes near the GT (shifted 0-25 px), some missed, as the model's normalised Lanes."""
    out = []
    for lane in lanes:
        if len(lane) >= 2 and rng.random() < 0.85:
            points = lane[np.argsort(lane[:, 1])][:: max(1, len(lane) // 12)]
            points = points + [rng.uniform(0, 25), 0.0]
            _, unique = np.unique(points[:, 1], return_index=True)
            if len(unique) >= 2:
                out.append(Lane(points[np.sort(unique)] / [width, height]))
    return out


@pytest.fixture(scope="module")
def llamas_root(llamas_tree) -> Path:
    return llamas_tree


@pytest.fixture(scope="module")
def curvelanes_root(curvelanes_tree) -> Path:
    return curvelanes_tree


def check_result(out: subprocess.CompletedProcess, expected: dict) -> None:
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert list(result) == list(THRESHOLDS) + ["mean"]
    for key in THRESHOLDS:
        assert result[key] == expected[threshold_key(float(key))]
    assert result["mean"]["F1"] == pytest.approx(expected["mF1"])


def test_llamas_cli_equals_metric(llamas_root, tmp_path):
    rng = np.random.default_rng(0)
    metric = LLAMASMetric([float(t) for t in THRESHOLDS])
    samples = read_llamas_split(llamas_root, "valid")
    for i, sample in enumerate(samples):
        gts, _ = sample.load_lanes()
        points = llamas_lane_points(predicted(gts, 1275, 716, rng))
        if i == 2:  # no prediction file: scored as no lanes
            points = []
        else:
            write_llamas_prediction(tmp_path / "pred", sample.img_name, points)
        metric.update([points], [gts])
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(llamas_root), "--split", "valid"]
    out = run_cli("llamas", *args, "--iou", *THRESHOLDS)
    assert f"1 of {len(samples)} prediction files missing" in out.stderr
    check_result(out, metric.compute())
    assert metric.compute()["0.5"]["TP"] > 5


def test_curvelanes_cli_equals_metric(curvelanes_root, tmp_path):
    rng = np.random.default_rng(0)
    metric = CurveLanesMetric([float(t) for t in THRESHOLDS])
    samples = read_curvelanes_split(curvelanes_root, "val")
    assert {s.ori_size for s in samples} == {(1440, 2560), (660, 1570), (720, 1280)}
    for sample in samples:
        gts, _ = sample.load_lanes()
        height, width = sample.ori_size
        lanes = predicted(gts, width, height, rng)
        points = curvelanes_lane_points(lanes, width, height, sample.cut_height)
        write_curvelanes_prediction(tmp_path / "pred", sample.img_name, points)
        metric.update([points], [gts], [sample.ori_size])
    args = ["--pred", str(tmp_path / "pred"), "--gt", str(curvelanes_root), "--split", "valid"]
    out = run_cli("curvelanes", *args, "--iou", *THRESHOLDS)
    assert "missing" not in out.stderr
    check_result(out, metric.compute())
    assert metric.compute()["0.5"]["TP"] > 5


def test_bad_prediction_files_exit_2_naming_file_and_line(
    llamas_root, curvelanes_root, tmp_path, evaluate_main, capsys
):
    def run_cli(*args: str) -> subprocess.CompletedProcess:
        return run_main(evaluate_main, capsys, *args)

    sample = read_llamas_split(llamas_root, "valid")[0]
    path = write_llamas_prediction(tmp_path / "llamas", sample.img_name, [])
    path.write_text("100 700 101 600\n100 700 oops 600\n")
    out = run_cli("llamas", "--pred", str(tmp_path / "llamas"), "--gt", str(llamas_root))
    assert out.returncode == 2 and out.stderr.startswith(f"error: {path}:2: expected finite")
    sample = read_curvelanes_split(curvelanes_root, "valid")[0]
    path = write_curvelanes_prediction(tmp_path / "cl", sample.img_name, [])
    path.write_text("1 2 3\n")
    out = run_cli("curvelanes", "--pred", str(tmp_path / "cl"), "--gt", str(curvelanes_root))
    assert out.returncode == 2 and out.stderr.startswith(f"error: {path}:1: a lane line has an odd")


def test_bad_labels_and_missing_trees_exit_2(tmp_path, evaluate_main, capsys):
    def run_cli(*args: str) -> subprocess.CompletedProcess:
        return run_main(evaluate_main, capsys, *args)

    label = tmp_path / "labels" / "valid" / "rec" / "x.json"
    label.parent.mkdir(parents=True)
    label.write_text('{"projection_matrix": [],\n "lanes": [{"lane_id": "l0",\n "markers": 3}]}')
    out = run_cli("llamas", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {label}:3: lanes[0].markers: expected a list")
    out = run_cli("llamas", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path), "--split", "test")
    assert out.returncode == 2 and "test labels are not public" in out.stderr
    out = run_cli("curvelanes", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path))
    assert out.returncode == 2 and "valid/valid.txt does not exist" in out.stderr
    split = tmp_path / "cl" / "valid"
    (split / "labels").mkdir(parents=True)
    (split / "valid.txt").write_text("images/a.jpg\n")
    (split / "labels" / "a.lines.json").write_text('{"Lines": [[{"x": "12.5", "y": "abc"}]]}')
    out = run_cli("curvelanes", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "cl"))
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {split / 'labels' / 'a.lines.json'}:1: Lines[0][0].y:")
