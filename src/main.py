"""Entry point: ``python -m src.main [group=option] [key=value ...]``.

One run, top to bottom: ``main`` takes Hydra's composed config (conf/ on src/config.py's schemas)
and runs one job (``run_job``): prepared (src/engine/job.py: checks, run lock, the checkpoint it
starts from, the data), then the mode's function (``MODES``) on every process. Each mode builds
its parts in src/engine/build.py: train runs the loop (src/engine/runner.py), validate / test
score a split (src/inference/evaluate.py), predict writes lanes for images or videos
(src/inference/predict.py), export writes the ONNX model (src/inference/export.py). Returns the
validation metric, which Hydra sweepers optimise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from src.config import register_configs
from src.data.loader_workers import stop_loader_workers
from src.data.video import list_videos
from src.engine.build import (
    Run,
    build_inference_model,
    build_model,
    build_training,
    eval_loader,
    make_evaluator,
    predict_cut_height,
)
from src.engine.job import prepared_job, run_on_every_rank
from src.inference.evaluate import evaluate, format_metrics
from src.inference.export import OnnxLaneModel, export_onnx
from src.inference.predict import predict, predict_videos, torch_detector
from src.launch.optuna_trial import run_trial
from src.launch.processes import failure_ends_slurm_step
from src.metrics import CULANE_CATEGORIES
from src.metrics.tusimple import result_note
from src.run_dir import EXPORT_DIR, PREDICTIONS_DIR, update_metrics_json

log = logging.getLogger(__name__)

register_configs()

ModeFn = Callable[["Run"], float | None]

# An absolute path: the configs are found whether this file runs as __main__ or as src.main.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with failure_ends_slurm_step():  # a failed job fails its SLURM step (sacct: FAILED)
        if cfg.sweep.trial is None:
            return run_job(cfg, run_dir)
        # A trial of an Optuna search: its outcome is also recorded on the trial
        # (src/launch/optuna_trial.py); a failure still raises: the study marks it FAIL.
        return run_trial(cfg.sweep, run_dir, partial(run_job, cfg, run_dir))


def run_job(cfg: DictConfig, run_dir: Path) -> float | None:
    """One job whose outputs go to ``run_dir``, which it holds alone."""
    with prepared_job(cfg, run_dir) as run:
        return run_on_every_rank(run, MODES[cfg.mode])


# cfg.mode -> the function each rank runs (the functions below register themselves).
MODES: dict[str, Callable[[Run], float | None]] = {}


def mode(*names: str) -> Callable[[ModeFn], ModeFn]:
    def register(function: ModeFn) -> ModeFn:
        MODES.update(dict.fromkeys(names, function))
        return function

    return register


@mode("train")
def train(run: Run) -> float:
    """Train to trainer.total_iter (resuming the run's checkpoint); the best val metric."""
    return build_training(run).fit()


@mode("validate", "test")
def evaluate_split(run: Run) -> float:
    """mode=validate / test: score the split, write metrics.json (test: the official prediction
    files, and CULane's F1 per category)."""
    cfg, fabric, name = run.cfg, run.fabric, run.cfg.mode
    model = build_inference_model(run)
    categories = CULANE_CATEGORIES if name == "test" and cfg.dataset.name == "culane" else None
    prediction_dir = run.run_dir / PREDICTIONS_DIR if name == "test" else None
    loader = eval_loader(fabric, run.datasets[name], cfg)
    try:
        metrics = evaluate(
            fabric,
            model,
            loader,
            make_evaluator(fabric, cfg, prediction_dir, categories),
            limit_batches=cfg.trainer.limit_val_batches,
            draw_dir=run.run_dir / f"{name}_images",
            num_draw=cfg.trainer.num_val_images,
        )
    finally:
        stop_loader_workers(loader)  # else exit may wait 5 s per live worker (src/data)
    log.info("%s: %s", name, format_metrics(metrics))
    if note := result_note(metrics):  # TuSimple F1 0.667 of a model predicting no lane
        log.warning("%s: %s", name, note)
        metrics["note"] = note
    if fabric.is_global_zero:
        update_metrics_json(run.run_dir, {name: metrics})
    return metrics["F1"]


@mode("predict")
def predict_images(run: Run) -> None:
    """mode=predict: lanes for the images or videos of predict.input, with the torch model or
    (predict.backend=onnx) the exported model under ONNX Runtime."""
    cfg, fabric, data = run.cfg, run.fabric, run.cfg.dataset
    if cfg.predict.backend == "onnx":
        location = cfg.predict.onnx or run.run_dir / EXPORT_DIR
        detector = OnnxLaneModel(location, input_size=(data.img_w, data.img_h))
    else:
        detector = torch_detector(fabric, build_inference_model(run))
    out_dir = run.run_dir / PREDICTIONS_DIR
    videos = list_videos(cfg.predict.input)
    if not videos:
        loader = eval_loader(fabric, run.datasets["predict"], cfg)
        try:
            predict(fabric, detector, loader, out_dir, cfg.predict.draw)
        finally:
            stop_loader_workers(loader)  # else exit may wait 5 s per live worker (src/data)
        return
    if fabric.is_global_zero:  # frames are sequential: one process reads and writes a video
        size, cut = (data.img_w, data.img_h), predict_cut_height(cfg)
        batch, draw, progress = data.eval_batch_size, cfg.predict.draw, cfg.trainer.progress
        predict_videos(detector, videos, out_dir, cut, size, batch, draw, progress)
    fabric.barrier()


@mode("export")
def export_model(run: Run) -> None:
    """mode=export: the network of load_from or the run's best checkpoint (EMA weights where the
    run used EMA) as <run dir>/export/model.onnx + decode.json."""
    if run.fabric.is_global_zero:
        cfg = run.cfg
        export_onnx(
            build_model(run), run.run_dir / EXPORT_DIR, cfg.dataset.cut_height, cfg.export.opset
        )
    run.fabric.barrier()


if __name__ == "__main__":
    # Call main through the importable module src.main, not this __main__ copy: submitit
    # (hydra/launcher=local, slurm) pickles the task function, and cloudpickle pickles functions
    # of __main__ by value, together with everything they reach.
    from src.main import main as task_function

    task_function()
