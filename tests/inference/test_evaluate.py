"""The evaluator: decoded lanes + dataset metadata give the same numbers as writing the official
prediction files and scoring them like the official tools (scripts/evaluate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from src.config import EvalConfig
from src.data import build_dataset
from src.data.config import DatasetConfig
from src.data.video import video_writer
from src.engine.checkpoint import read_checkpoint
from src.inference.benchmarks import (
    CULaneBenchmark,
    CurveLanesBenchmark,
    LLAMASBenchmark,
    TuSimpleBenchmark,
)
from src.inference.compiled import FrozenCompiledModel
from src.inference.evaluate import LaneEvaluator
from src.lane import Lane
from src.metrics import (
    CULANE_CATEGORIES,
    score_culane_files,
    score_curvelanes_files,
    score_llamas_files,
    score_tusimple_files,
)
from src.models.srlane import SRLane, load_weights
from tests.data.lane_trees import (
    culane_config,
    lane_image,
    tusimple_config,
    write_culane_tree,
    write_tusimple_tree,
)
from tests.launcher_helpers import ROOT, compose_cfg, run_main, tiny_run

CULANE_PREDICTIONS, TUSIMPLE_PREDICTIONS = CULaneBenchmark.DIR, TuSimpleBenchmark.FILE


def predicted_lanes(meta: dict, rng: np.random.Generator) -> list[Lane]:
    """Lanes a model might output for this image: the true lanes, shifted by a few pixels (some
    by many), one dropped, and a spurious one, in original-image normalised coordinates."""
    height, width = meta["ori_size"]
    lanes = []
    for lane in meta["lanes"]:
        points = np.asarray(lane, dtype=np.float64)
        points = points[(points[:, 1] >= 0) & (points[:, 1] < height)]
        _, unique = np.unique(points[:, 1], return_index=True)
        points = points[np.sort(unique)]
        if len(points) < 2 or rng.random() < 0.2:
            continue
        shifted = points + [rng.choice([0.0, 3.0, 40.0]), 0.0]
        lanes.append(Lane(shifted / [width, height], score=0.9))
    if rng.random() < 0.5:
        ys = np.linspace(0.6, 1.0, 20)
        lanes.append(Lane(np.stack((0.3 + 0.1 * ys, ys), axis=1), score=0.5))
    return lanes


def run_evaluator(dataset, evaluator: LaneEvaluator) -> dict:
    rng = np.random.default_rng(0)
    metas = [dataset[i]["meta"] for i in range(len(dataset))]
    for start in range(0, len(metas), 3):  # a few batches
        batch = metas[start : start + 3]
        evaluator.update([predicted_lanes(m, rng) for m in batch], batch, [1.0] * len(batch))
    evaluator.write_rank_part()
    result = evaluator.compute()
    evaluator.merge_rank_parts()
    return result


def test_culane_in_loop_equals_scoring_the_written_files(tmp_path: Path) -> None:
    root = tmp_path / "culane"
    write_culane_tree(root)
    dataset = build_dataset(culane_config(root), "test", training=False)
    cfg = EvalConfig(culane_iou_thresholds=[0.5, 0.75])
    evaluator = LaneEvaluator("culane", cfg, CULANE_CATEGORIES, tmp_path / "pred")
    result = run_evaluator(dataset, evaluator)
    assert set(result) >= {"F1", "Precision", "Recall", "F1@0.75", "details"}

    files = score_culane_files(
        tmp_path / "pred" / CULANE_PREDICTIONS, root, root / "list" / "test.txt", (0.5, 0.75)
    )
    for threshold in ("0.5", "0.75"):
        for key in ("TP", "FP", "FN", "F1"):
            assert result["details"][threshold][key] == pytest.approx(
                files.result[threshold][key]
            ), (threshold, key)
    assert 0.0 < result["F1"] < 1.0  # the perturbations were scored, not a trivial case
    per_category = result["details"]["categories"]
    assert sum(c["0.5"]["TP"] for c in per_category.values()) == result["details"]["0.5"]["TP"]


def test_tusimple_in_loop_equals_scoring_the_written_file(tmp_path: Path) -> None:
    root = tmp_path / "tusimple"
    write_tusimple_tree(root, per_file=5)
    dataset = build_dataset(tusimple_config(root), "test", training=False)
    evaluator = LaneEvaluator("tusimple", EvalConfig(), None, tmp_path / "pred")
    result = run_evaluator(dataset, evaluator)
    files = score_tusimple_files(tmp_path / "pred" / TUSIMPLE_PREDICTIONS, root / "test_label.json")
    for key in ("Accuracy", "FP", "FN", "F1"):
        assert result[key] == pytest.approx(files[key]), key
    assert 0.0 < result["Accuracy"] < 1.0


def test_llamas_in_loop_equals_scoring_the_written_files(llamas_tree: Path, tmp_path: Path) -> None:
    cfg = compose_cfg("dataset=llamas", f"dataset.root={llamas_tree}").dataset
    dataset = build_dataset(cfg, "valid", training=False)
    evaluator = LaneEvaluator(
        "llamas", EvalConfig(culane_iou_thresholds=[0.5, 0.75]), None, tmp_path / "pred"
    )
    result = run_evaluator(dataset, evaluator)
    predictions = tmp_path / "pred" / LLAMASBenchmark.DIR
    files = score_llamas_files(predictions, llamas_tree, "valid", (0.5, 0.75))
    assert not files.missing
    for threshold in ("0.5", "0.75"):
        for key in ("TP", "FP", "FN", "F1"):
            assert result["details"][threshold][key] == pytest.approx(
                files.result[threshold][key]
            ), (threshold, key)
    assert 0.0 < result["F1"] < 1.0


def test_culane_format_data_of_another_size_is_scored_on_its_own_canvas(tmp_path: Path) -> None:
    root = tmp_path / "culane720"
    write_culane_tree(root, counts={"test": 9}, size=(1280, 720))
    dataset = build_dataset(
        culane_config(root, ori_w=1280, ori_h=720, cut_height=320), "test", False
    )
    evaluator = LaneEvaluator(
        "culane", EvalConfig(), CULANE_CATEGORIES, tmp_path / "pred", img_size=(720, 1280)
    )
    result = run_evaluator(dataset, evaluator)
    predictions = tmp_path / "pred" / CULANE_PREDICTIONS
    own = score_culane_files(
        predictions, root, root / "list" / "test.txt", (0.5,), img_size=(720, 1280)
    )
    for key in ("TP", "FP", "FN", "F1"):
        assert result["details"]["0.5"][key] == pytest.approx(own.result["0.5"][key]), key
    assert evaluator.metric.img_size == (720, 1280)
    cli = [sys.executable, "scripts/evaluate.py", "culane", "--pred", str(predictions)]
    cli += ["--gt", str(root), "--list", str(root / "list" / "test.txt"), "--size", "1280x720"]
    out = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["0.5"] == own.result["0.5"]


def test_curvelanes_in_loop_equals_scoring_the_written_files(
    curvelanes_tree: Path, tmp_path: Path
) -> None:
    """Three image sizes, each with its own crop and its own 224x224 canvas; more than 4 lanes."""
    cfg = DatasetConfig(
        name="curvelanes",
        root=str(curvelanes_tree),
        ori_w=2560,
        ori_h=1440,
        cut_height=640,
        max_lanes=16,
    )
    dataset = build_dataset(cfg, "valid", training=False)
    sizes = {dataset[i]["meta"]["ori_size"] for i in range(len(dataset))}
    assert len(sizes) == 3
    evaluator = LaneEvaluator("curvelanes", EvalConfig(), None, tmp_path / "pred")
    result = run_evaluator(dataset, evaluator)
    predictions = tmp_path / "pred" / CurveLanesBenchmark.DIR
    files = score_curvelanes_files(predictions, curvelanes_tree, "valid")
    for key in ("TP", "FP", "FN", "F1"):
        assert result["details"]["0.5"][key] == pytest.approx(files.result["0.5"][key]), key
    assert 0.0 < result["F1"] < 1.0


# ------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_frozen_compile_scores_as_eager(tiny_root: Path, tmp_path: Path) -> None:
    """evaluation.compile=true (torch.compile with freezing) in fp32: the same metric as eager,
    through the launcher's mode=validate; under bf16 its predictions stay near eager fp32's."""
    run_dir = tmp_path / "run"
    run_main([*tiny_run(tiny_root, total_iter=4), f"hydra.run.dir={run_dir}"])
    scores = {}
    for compiled in ("false", "true"):
        args = [*tiny_run(tiny_root), "mode=validate", f"evaluation.compile={compiled}"]
        run_main([*args, f"hydra.run.dir={run_dir}"])
        scores[compiled] = json.loads((run_dir / "metrics.json").read_text())["validate"]
    assert scores["true"] == scores["false"]
    assert "evaluation.compile: torch.compile with freezing" in (run_dir / "main.log").read_text()

    cfg = compose_cfg(*tiny_run(tiny_root))
    model = instantiate(cfg.model, pretrained_backbone=None).eval()
    load_weights(model, read_checkpoint(run_dir / "checkpoints" / "best.ckpt")["model"], "best")
    frozen = FrozenCompiledModel(model)
    img = torch.rand(3, 3, cfg.dataset.img_h, cfg.dataset.img_w)
    with torch.no_grad():
        eager = model(img)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert (frozen(img).float() - eager).abs().max() <= 0.05
    assert sum(1 for _ in frozen.parameters()) == sum(1 for _ in model.parameters())


@pytest.mark.slow
def test_int8_validate_scores_like_fp32(tiny_root: Path, tmp_path: Path) -> None:
    """evaluation.int8=true through the launcher's mode=validate: calibrated on images of the
    training split, the int8 backbone compiled, the metric within 0.02 F1 of fp32 (int8 rounding
    moves a lane near the threshold now and then, so not exactly equal)."""
    pytest.importorskip("torchao", reason="the optional extra 'deploy' is not installed")
    run_dir = tmp_path / "run"
    run_main([*tiny_run(tiny_root, total_iter=4), f"hydra.run.dir={run_dir}"])
    scores = {}
    for int8 in ("false", "true"):
        args = [*tiny_run(tiny_root), "mode=validate", f"evaluation.int8={int8}"]
        run_main([*args, "evaluation.int8_calibration_images=4", f"hydra.run.dir={run_dir}"])
        scores[int8] = json.loads((run_dir / "metrics.json").read_text())["validate"]
    assert scores["false"]["F1"] > 0  # lanes are found: the comparison means something
    assert abs(scores["true"]["F1"] - scores["false"]["F1"]) <= 0.02
    log = (run_dir / "main.log").read_text()
    assert "int8 calibration set (evaluation.int8_calibration=auto): 4 of the 12 images" in log
    assert "int8 model calibrated on 4 images" in log
    assert "evaluation.int8: calibrating the int8 model" in log


@pytest.mark.slow
def test_int8_predict_on_a_video_needs_no_training_split(tmp_path: Path) -> None:
    """mode=predict evaluation.int8=true with no dataset on disk: int8 is calibrated on frames
    of the video it predicts (evaluation.int8_calibration=auto), every frame gets a row."""
    weights = tmp_path / "weights.pt"
    torch.manual_seed(0)
    torch.save(SRLane(img_w=320, img_h=128).state_dict(), weights)
    video = tmp_path / "drive.mp4"
    writer = video_writer(video, 10.0, 640, 360)
    for shift in range(5):
        lane = np.array([[200.0 + 8 * shift, 359.0], [300.0 + 8 * shift, 100.0]])
        writer.write(lane_image(640, 360, [lane]))
    writer.release()
    nowhere = tmp_path / "no_dataset"
    overrides = [
        *("mode=predict", f"load_from={weights}", f"predict.input={video}", "predict.draw=false"),
        *("evaluation.int8=true", "evaluation.int8_calibration_images=3", "predict.cut_height=80"),
        *(f"dataset.root={nowhere}", "trainer.accelerator=cpu", "trainer.progress=false"),
    ]
    run_main([*overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    rows = (tmp_path / "run" / "predictions" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(row)["frame"] for row in rows] == list(range(5))
    assert not nowhere.exists()  # no split read, none generated
    log = (tmp_path / "run" / "main.log").read_text()
    assert f"(evaluation.int8_calibration=auto): 3 of the 5 frames of {video}" in log
    assert "int8 model calibrated on 3 images" in log


@pytest.mark.slow
def test_the_clrnet_llamas_recipe_trains_and_scores_llamas(
    llamas_tree: Path, tmp_path: Path
) -> None:
    """experiment=clrnet_llamas (shortened): trains on the LLAMAS tree, validates with the LLAMAS
    metric, and mode=test scores the valid split (its test labels are not public) and writes the
    benchmark's prediction files."""
    run_dir = tmp_path / "run"
    args = [
        "experiment=clrnet_llamas",
        "debug=default",
        f"dataset.root={llamas_tree}",
        "model.pretrained_backbone=null",  # no ImageNet download in a test
        "trainer.total_iter=2",
        "dataset.batch_size=2",
        "dataset.eval_batch_size=3",
        "dataset.num_workers=0",
        "trainer.progress=false",
        f"hydra.run.dir={run_dir}",
    ]
    run_main(args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/F1", "val/Precision", "val/Recall"} <= set(metrics["final_validation"])
    run_main([*args, "mode=test", "eval_checkpoint=last"])
    written = list((run_dir / "predictions" / LLAMASBenchmark.DIR).rglob("*.lines.txt"))
    assert len(written) == 5  # the valid split's images
