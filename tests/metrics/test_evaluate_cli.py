"""scripts/evaluate.py on files written by the writers equals the in-loop metrics."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src.lane import Lane
from src.metrics import (
    CULaneMetric,
    TuSimpleMetric,
    culane_lane_points,
    culane_lines_text,
    threshold_key,
    tusimple_lane_xs,
    write_culane_prediction,
    write_tusimple_predictions,
)
from src.testing.lane_sets import culane_images

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "evaluate.py"
H_SAMPLES = list(range(160, 720, 10))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def to_lane(pixels: np.ndarray, width: int, height: int, shift: float = 0.0) -> Lane:
    pts = pixels[np.argsort(pixels[:, 1])] + np.array([shift, 0.0])
    return Lane(pts / np.array([width, height]))


def test_tusimple_cli_equals_metric(tmp_path):
    rng = np.random.default_rng(0)
    gt_lines, records = [], []
    metric = TuSimpleMetric()
    for i in range(12):
        gt_lanes, pred_lanes = [], []
        for _ in range(int(rng.integers(1, 6))):
            ys = np.arange(240, 720, 10, dtype=np.float64)
            xs = rng.uniform(100, 1100) + rng.normal(0, 0.6) * (ys - 240)
            lane_px = np.stack([xs, ys], axis=1)
            gt_row = np.where((xs >= 0) & (xs < 1280), xs.astype(int), -2)
            gt_lanes.append([-2] * 8 + gt_row.tolist())
            if rng.random() < 0.8:
                pred_lanes.append(to_lane(lane_px, 1280, 720, shift=rng.normal(0, 10)))
        pred_xs = tusimple_lane_xs(pred_lanes, H_SAMPLES, 1280, 720)
        raw_file = f"clips/0530/{i}/20.jpg"
        run_time = float(rng.choice([2.0, 250.0], p=[0.9, 0.1]))
        gt_lines.append(
            json.dumps({"lanes": gt_lanes, "h_samples": H_SAMPLES, "raw_file": raw_file})
        )
        records.append({"raw_file": raw_file, "lanes": pred_xs, "run_time": run_time})
        metric.update([pred_xs], [gt_lanes], [H_SAMPLES], [run_time])
    gt_path = tmp_path / "test_label.json"
    gt_path.write_text("\n".join(gt_lines) + "\n")
    pred_path = write_tusimple_predictions(tmp_path / "pred.json", records)
    out = run_cli("tusimple", "--pred", str(pred_path), "--gt", str(gt_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"Accuracy", "FP", "FN", "F1"}
    assert result == metric.compute()


def test_tusimple_cli_rejects_incomplete_predictions(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"lanes": [], "h_samples": H_SAMPLES, "raw_file": "a.jpg"}) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_text("")
    out = run_cli("tusimple", "--pred", str(pred), "--gt", str(gt))
    assert out.returncode == 2 and "need one per image" in out.stderr


@pytest.mark.parametrize("evaluator", ["python", "cpp"])
def test_culane_cli_equals_metric(tmp_path, evaluator):
    thresholds = (0.5, 0.75, 0.9)
    names = []
    metric = CULaneMetric(thresholds, evaluator=evaluator)
    for i, (_, gts) in enumerate(culane_images(15, seed=3)):
        name = f"/driver_37_30frame/05181432_0203.MP4/{i * 30:05d}.jpg"
        names.append(name)
        gt_file = tmp_path / "gt" / name.lstrip("/").replace(".jpg", ".lines.txt")
        gt_file.parent.mkdir(parents=True, exist_ok=True)
        gt_file.write_text(culane_lines_text(gts))
        lanes = [to_lane(g, 1640, 590, shift=(-1) ** j * 4.0 * j) for j, g in enumerate(gts)]
        points = culane_lane_points(lanes, 1640, 590, cut_height=270)
        if i == 7:  # no prediction file: scored as no lanes
            points = []
        else:
            write_culane_prediction(tmp_path / "pred", name, points)
        metric.update([points], [gts])
    list_path = tmp_path / "list" / "test.txt"
    list_path.parent.mkdir()
    list_path.write_text("\n".join(names) + "\n")
    out = run_cli(
        "culane",
        "--pred",
        str(tmp_path / "pred"),
        "--gt",
        str(tmp_path / "gt"),
        "--list",
        str(list_path),
        "--evaluator",
        evaluator,
        "--iou",
        *map(str, thresholds),
    )
    assert out.returncode == 0, out.stderr
    assert "1 of 15 prediction files missing" in out.stderr
    result = json.loads(out.stdout)
    expected = metric.compute()
    assert list(result) == [threshold_key(t) for t in thresholds] + ["mean"]
    for t in thresholds:
        assert result[threshold_key(t)] == expected[threshold_key(t)]
    assert result["mean"]["F1"] == pytest.approx(expected["mF1"])
    assert result["mean"]["TP"] == sum(expected[threshold_key(t)]["TP"] for t in thresholds)


def test_culane_cli_single_threshold_has_no_mean(tmp_path):
    (tmp_path / "gt" / "d").mkdir(parents=True)
    (tmp_path / "p").mkdir()  # no prediction files in it
    (tmp_path / "gt" / "d" / "1.lines.txt").write_text("1 590 50 300\n")
    (tmp_path / "list.txt").write_text("/d/1.jpg\n")
    args = ["culane", "--pred", str(tmp_path / "p"), "--gt", str(tmp_path / "gt")]
    out = run_cli(*args, "--list", str(tmp_path / "list.txt"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "0.5": {"TP": 0, "FP": 0, "FN": 1, "Precision": 0.0, "Recall": 0.0, "F1": 0.0}
    }
    (tmp_path / "list.txt").write_text("/d/2.jpg\n")  # no GT file: an error
    out = run_cli(*args, "--list", str(tmp_path / "list.txt"))
    assert out.returncode == 2 and "GT label file missing" in out.stderr


@pytest.mark.parametrize(
    ("pred_bytes", "message"),
    [
        (
            json.dumps({"raw_file": "a.jpg", "lanes": {"0": [1] * 56}, "run_time": 1}).encode(),
            "pred.json:1: lanes must be a list of lanes",
        ),
        (
            json.dumps(
                {"raw_file": "a.jpg", "lanes": [[1] * 56, [1] * 40], "run_time": 1}
            ).encode(),
            "pred.json:1: lane 1 has 40 values, expected one x per h_sample (56 values",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff", "pred.json:1: expected UTF-8 text"),
    ],
    ids=["lanes_dict", "short_lane", "binary_file"],
)
def test_bad_prediction_file_exits_2_with_one_line_naming_file_and_line(
    tmp_path, pred_bytes, message
):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"lanes": [], "h_samples": H_SAMPLES, "raw_file": "a.jpg"}) + "\n")
    pred = tmp_path / "pred.json"
    pred.write_bytes(pred_bytes + b"\n")
    out = run_cli("tusimple", "--pred", str(pred), "--gt", str(gt))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: {tmp_path / message}")
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
