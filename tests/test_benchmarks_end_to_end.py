"""LLAMAS and CurveLanes through the launcher, on the generated trees in their official layouts:
train, test (the official prediction files, which scripts/evaluate.py scores to the in-loop
numbers) and export. CurveLanes runs with 16 lanes: targets, assignment, NMS top-k, decoding,
writers, metric and export take more than 4 or 5."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launcher_helpers import ROOT, run_main

SMALL = [
    "dataset.synthetic.num_train=8",
    "dataset.synthetic.num_val=6",
    "dataset.synthetic.num_test=2",
    "dataset.batch_size=2",
    "dataset.eval_batch_size=3",
    "dataset.num_workers=0",
    "trainer.precision=32-true",
    "trainer.progress=false",
    "debug=default",
]


def scored(dataset: str, predictions: Path, root: Path) -> dict:
    command = [sys.executable, "scripts/evaluate.py", dataset, "--pred", str(predictions)]
    command += ["--gt", str(root), "--split", "valid"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "official", "max_lanes"),
    [("llamas_synthetic", "llamas", 4), ("curvelanes_synthetic", "curvelanes", 16)],
)
def test_train_test_and_export_score_like_the_official_tool(
    tmp_path: Path, dataset: str, official: str, max_lanes: int
) -> None:
    run_dir = tmp_path / "run"
    args = [f"dataset={dataset}", f"dataset.cache_dir={tmp_path / 'cache'}", *SMALL]
    args += ["model.nms_thres=20", f"hydra.run.dir={run_dir}"]
    run_main(args)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["final_step"] == 4

    run_main([*args, "mode=test"])
    tested = json.loads((run_dir / "metrics.json").read_text())["test"]
    trees = list((tmp_path / "cache" / dataset).iterdir())
    files = run_dir / "predictions" / f"{official}_predictions"
    scores = scored(official, files, trees[0])
    for key in ("TP", "FP", "FN", "F1"):
        assert tested["details"]["0.5"][key] == pytest.approx(scores["0.5"][key]), key

    run_main([*args, "mode=export"])
    spec = json.loads((run_dir / "export" / "decode.json").read_text())
    assert spec["max_lanes"] == max_lanes
