"""Entry point: ``python -m src.main [group=option] [key=value ...]``.

The recipe of one run, top to bottom: check the config and the machine (src/checks.py), read
the checkpoint the run starts from (src/checkpoint.py), build every part from the config
(``build``), start the processes (src/distributed.py), then run the mode's function on every rank
(``MODES``): train (src/runner.py), validate / test or predict (src/evaluation.py), export
(src/export.py). Returns the validation metric so that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric import Fabric, seed_everything
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Subset

from src.checkpoint import (
    check_resume_config,
    eval_checkpoint_path,
    evaluation_weights,
    read_checkpoint,
    resume_path,
)
from src.checks import check_config, check_environment, resolve_precision, warn_config
from src.config import register_configs
from src.data import EpochSampler, build_dataset, collate_lanes
from src.data.calibration import calibration_images, spread
from src.data.images import ImageListDataset
from src.data.video import list_videos
from src.distributed import (
    announce_rank,
    failure_ends_slurm_step,
    finish_job,
    log_to_rank_file,
    prepare_job_processes,
    process_rank,
)
from src.evaluation import (
    LaneEvaluator,
    evaluate,
    format_metrics,
    inference_model,
    predict,
    predict_videos,
    torch_detector,
    update_metrics_json,
)
from src.export import EXPORT_DIR, OnnxLaneModel, export_onnx
from src.loggers import build_logger, close_loggers
from src.metrics import CULANE_CATEGORIES
from src.models.srlane import load_weights
from src.optim import build_optimizer
from src.preemption import InterruptWatch, PreemptionWatch
from src.pruning import OptunaPruning, run_trial
from src.run_lock import RunDirLock
from src.runner import Runner

log = logging.getLogger(__name__)

register_configs()


# ----------------------------------------------------------------------------- parts
@dataclass
class Start:
    """The checkpoint a run starts from, read once: a training checkpoint to resume, or the
    weights an evaluation uses."""

    path: Path | None = None
    saved: dict[str, Any] = field(default_factory=dict)


@dataclass
class Parts:
    """Everything ``build`` makes from the config."""

    datasets: dict[str, Dataset]
    model: nn.Module
    optimizer: torch.optim.Optimizer | None = None
    scheduler: Any = None
    loggers: list[Any] = field(default_factory=list)
    callbacks: list[Any] = field(default_factory=list)


def read_start(cfg: DictConfig, run_dir: Path) -> Start:
    """Train: the checkpoint to resume (its config must match). Evaluate: load_from or this
    run's best/last checkpoint (export too). Train from scratch (or from load_from weights), or
    predict with ONNX Runtime (the exported file holds the weights): nothing."""
    if cfg.mode == "train":
        path = resume_path(run_dir, cfg.resume)
        if path is None:
            return Start()
        saved = read_checkpoint(path)
        check_resume_config(path, saved, OmegaConf.to_container(cfg, resolve=True))
        return Start(path, saved)
    if cfg.mode == "predict" and cfg.predict.backend == "onnx":
        return Start()
    path = eval_checkpoint_path(run_dir, cfg.load_from, cfg.eval_checkpoint, cfg.mode)
    return Start(path, read_checkpoint(path))


def build_datasets(cfg: DictConfig) -> dict[str, Dataset]:
    """The splits the mode needs. Data comes first: a missing dataset fails before the model or
    any process is started. Export needs none; videos are read frame by frame as predicted."""
    data = cfg.dataset
    if cfg.mode == "train":
        return {
            "train": build_dataset(data, data.train_split, training=True, seed=cfg.seed),
            "val": build_dataset(data, data.val_split, training=False, seed=cfg.seed),
        }
    calibration = {"calibration": int8_calibration_set(cfg)} if cfg.evaluation.int8 else {}
    if cfg.mode in ("validate", "test"):
        split = data.val_split if cfg.mode == "validate" else data.test_split
        return {cfg.mode: build_dataset(data, split, training=False, seed=cfg.seed), **calibration}
    if cfg.mode == "export" or list_videos(cfg.predict.input):
        return calibration
    images = ImageListDataset(
        cfg.predict.input,
        data.img_w,
        data.img_h,
        predict_cut_height(cfg),
        skip_unreadable=data.skip_unreadable_images,
    )
    return {"predict": images, **calibration}


def predict_cut_height(cfg: DictConfig) -> int:
    """Rows cut from the top of each predicted image or frame."""
    cut = cfg.predict.cut_height
    return int(cut if cut is not None else cfg.dataset.cut_height)


def build(cfg: DictConfig, run_dir: Path, start: Start) -> Parts:
    """Every part of the run from its config group, each logged with its _target_."""
    # ImageNet initialisation only for a fresh training: other weights replace it anyway, and an
    # offline evaluation must not need the ImageNet file.
    overwritten = cfg.mode != "train" or start.path is not None or cfg.load_from
    backbone = {"pretrained_backbone": None} if overwritten else {}
    parts = Parts(datasets=build_datasets(cfg), model=instantiate(cfg.model, **backbone))
    log.info("model: %s (%s)", cfg.model._target_, cfg.model.backbone)
    if cfg.mode != "train":
        if start.path is None:  # predict.backend=onnx: the exported file has the weights
            return parts
        weights = evaluation_weights(start.saved, start.path)
        log.info("loaded weights: %s", load_weights(parts.model, weights, name=str(start.path)))
        return parts
    if cfg.load_from:
        log.info("loaded weights: %s", load_weights(parts.model, cfg.load_from))
    parts.optimizer = build_optimizer(cfg, parts.model.parameters())  # trainer.scale_lr
    log.info("optimizer: %s", cfg.optimizer._target_)
    parts.scheduler = instantiate(cfg.scheduler)(parts.optimizer)
    log.info("scheduler: %s", cfg.scheduler._target_)
    resume_step = start.saved["train_state"]["step"] if start.saved else None
    parts.loggers = [build_logger(cfg.logger, run_dir, run_dir.name, resume_step)]
    log.info("logger: %s", cfg.logger.name)
    for name, callback_cfg in cfg.callbacks.items():
        parts.callbacks.append(instantiate(callback_cfg))
        log.info("callback %s: %s", name, callback_cfg._target_)
    if cfg.sweep.trial is not None:  # a trial of an Optuna search: report, stop when pruned
        parts.callbacks.append(OptunaPruning(cfg.sweep))
        log.info(
            "callback optuna_pruning: trial %d of study %s", cfg.sweep.trial, cfg.sweep.study_name
        )
    return parts


def make_loader(
    fabric: Fabric, dataset: Dataset, sampler: EpochSampler, batch_size: int, cfg: DictConfig
) -> DataLoader:
    workers = cfg.dataset.num_workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_lanes,
        drop_last=sampler.shuffle,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        # Own generator: creating loader iterators must not consume the global torch RNG.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    return fabric.setup_dataloaders(loader, use_distributed_sampler=False)


def eval_loader(fabric: Fabric, dataset: Dataset, cfg: DictConfig) -> DataLoader:
    """Every rank scores a disjoint shard of the split, in order."""
    sampler = EpochSampler(
        len(dataset), shuffle=False, num_replicas=fabric.world_size, rank=fabric.global_rank
    )
    return make_loader(fabric, dataset, sampler, cfg.dataset.eval_batch_size, cfg)


def int8_calibration_set(cfg: DictConfig) -> Dataset:
    """evaluation.int8: the evaluation.int8_calibration_images images it is calibrated on, spread
    over evaluation.int8_calibration (src/data/calibration.py), named in the log."""
    data, setting = cfg.dataset, cfg.evaluation.int8_calibration
    count = cfg.evaluation.int8_calibration_images
    source = setting
    if setting == "auto":
        source = cfg.predict.input if cfg.mode == "predict" else "split"
    if source == "split":  # eval transforms: the model sees what it will score
        split = build_dataset(data, data.train_split, training=False, seed=cfg.seed)
        images: Dataset = Subset(split, spread(len(split), count))
        described = f"{len(images)} of the {len(split)} images of the {data.train_split} split"
    else:
        cut = predict_cut_height(cfg)
        skip = data.skip_unreadable_images
        images, described = calibration_images(source, count, data.img_w, data.img_h, cut, skip)
    log.info("int8 calibration set (evaluation.int8_calibration=%s): %s", setting, described)
    return images


def int8_calibration(fabric: Fabric, cfg: DictConfig, parts: Parts) -> Iterator[Tensor] | None:
    """evaluation.int8: the image batches of the calibration set, the same on every rank (so all
    ranks quantize alike); unreadable images skipped under dataset.skip_unreadable_images are
    left out."""
    if not cfg.evaluation.int8:
        return None
    # Read in worker processes like every split: OpenCV used in this process before the
    # evaluation loader forks its workers deadlocks them (its thread pool's lock is copied held).
    loader = DataLoader(
        parts.datasets["calibration"],
        cfg.dataset.eval_batch_size,
        num_workers=cfg.dataset.num_workers,
        collate_fn=collate_lanes,
    )

    def readable(batch: dict[str, Any]) -> Tensor:
        return batch["img"][torch.tensor([not meta.get("skipped") for meta in batch["meta"]])]

    return (fabric.to_device(img) for img in map(readable, loader) if len(img))


def setup_inference_model(fabric: Fabric, cfg: DictConfig, parts: Parts) -> nn.Module:
    """The model as mode=validate/test/predict run it (evaluation.compile, evaluation.int8)."""
    model = fabric.setup(parts.model).module
    return inference_model(model, cfg.evaluation.compile, int8_calibration(fabric, cfg, parts))


def make_evaluator(
    fabric: Fabric, cfg: DictConfig, prediction_dir: Path | None = None, categories: Any = None
) -> LaneEvaluator:
    data = cfg.dataset
    evaluator = LaneEvaluator(
        data.name,
        cfg.evaluation,
        categories,
        prediction_dir,
        fabric.global_rank,
        img_size=(data.ori_h, data.ori_w),
    )
    evaluator.metric.to(fabric.device)  # torchmetrics syncs on the process group's device
    return evaluator


# ----------------------------------------------------------------------------- modes
def train(fabric: Fabric, cfg: DictConfig, run_dir: Path, parts: Parts, start: Start) -> float:
    """Train to trainer.total_iter (resuming ``start``); returns the best validation metric."""
    model = parts.model
    if cfg.trainer.sync_batchnorm and fabric.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.trainer.compile:
        model = torch.compile(model)  # Fabric re-applies it around the DDP wrapper
    model, optimizer = fabric.setup(model, parts.optimizer)
    ema = None
    if cfg.trainer.ema_decay:
        ema = AveragedModel(
            model.module,
            multi_avg_fn=get_ema_multi_avg_fn(cfg.trainer.ema_decay),
            use_buffers=True,
        )
    world, rank = fabric.world_size, fabric.global_rank
    micro_batch = cfg.dataset.batch_size // (world * cfg.trainer.accumulate_grad_batches)
    train_sampler = EpochSampler(
        len(parts.datasets["train"]), shuffle=True, seed=cfg.seed, num_replicas=world, rank=rank
    )
    train_loader = make_loader(fabric, parts.datasets["train"], train_sampler, micro_batch, cfg)
    val_loader = eval_loader(fabric, parts.datasets["val"], cfg)
    runner = Runner(
        cfg,
        fabric,
        run_dir,
        model,
        optimizer,
        parts.scheduler,
        ema,
        parts.callbacks,
        PreemptionWatch(),
        InterruptWatch(),
    )
    if start.path is not None:
        runner.restore(start.saved, start.path)
    status = "failed"
    try:
        with runner.interrupts:  # Ctrl-C / SIGTERM stop at a step boundary while training
            best = runner.fit(
                train_loader, train_sampler, val_loader, partial(make_evaluator, fabric, cfg)
            )
        status = "success"
    finally:
        close_loggers(fabric.loggers, status)  # before the next job of a multirun
    return best


def evaluate_split(
    fabric: Fabric, cfg: DictConfig, run_dir: Path, parts: Parts, start: Start
) -> float:
    """mode=validate / test: score the split, write metrics.json (test: the official
    prediction files, and CULane's F1 per category)."""
    model = setup_inference_model(fabric, cfg, parts)
    name = cfg.mode
    categories = CULANE_CATEGORIES if name == "test" and cfg.dataset.name == "culane" else None
    prediction_dir = run_dir / "predictions" if name == "test" else None
    metrics = evaluate(
        fabric,
        model,
        eval_loader(fabric, parts.datasets[name], cfg),
        make_evaluator(fabric, cfg, prediction_dir, categories),
        limit_batches=cfg.trainer.limit_val_batches,
        draw_dir=run_dir / f"{name}_images",
        num_draw=cfg.trainer.num_val_images,
    )
    log.info("%s: %s", name, format_metrics(metrics))
    if fabric.is_global_zero:
        update_metrics_json(run_dir, {name: metrics})
    return metrics["F1"]


def predict_images(
    fabric: Fabric, cfg: DictConfig, run_dir: Path, parts: Parts, start: Start
) -> None:
    """mode=predict: lanes for the images or the videos of predict.input, with the torch model
    or (predict.backend=onnx) the exported model under ONNX Runtime."""
    data = cfg.dataset
    if cfg.predict.backend == "onnx":
        location = cfg.predict.onnx or run_dir / EXPORT_DIR
        detector = OnnxLaneModel(location, input_size=(data.img_w, data.img_h))
    else:
        detector = torch_detector(fabric, setup_inference_model(fabric, cfg, parts))
    out_dir = run_dir / "predictions"
    videos = list_videos(cfg.predict.input)
    if not videos:
        loader = eval_loader(fabric, parts.datasets["predict"], cfg)
        predict(fabric, detector, loader, out_dir, cfg.predict.draw)
        return
    if fabric.is_global_zero:  # frames are sequential: one process reads and writes a video
        size = (data.img_w, data.img_h)
        progress = cfg.trainer.progress
        cut = predict_cut_height(cfg)
        predict_videos(
            detector, videos, out_dir, cut, size, data.eval_batch_size, cfg.predict.draw, progress
        )
    fabric.barrier()


def export_model(
    fabric: Fabric, cfg: DictConfig, run_dir: Path, parts: Parts, start: Start
) -> None:
    """mode=export: the network of load_from or the run's best checkpoint (EMA weights where the
    run used EMA) as <run dir>/export/model.onnx + decode.json (src/export.py)."""
    if fabric.is_global_zero:
        export_onnx(parts.model, run_dir / EXPORT_DIR, cfg.dataset.cut_height, cfg.export.opset)
    fabric.barrier()


MODES = {
    "train": train,
    "validate": evaluate_split,
    "test": evaluate_split,
    "predict": predict_images,
    "export": export_model,
}


# ------------------------------------------------------------------------------- run
def set_determinism(deterministic: bool) -> None:
    """trainer.deterministic: deterministic kernels where torch has them (cuBLAS needs its
    workspace setting before its first use); ops without one warn instead of failing."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True  # as the reference; fixed input sizes


def run_mode(
    fabric: Fabric, cfg: DictConfig, run_dir: Path, parts: Parts, start: Start
) -> float | None:
    """Everything after the processes exist: one call per rank."""
    set_determinism(cfg.trainer.deterministic)
    announce_rank(fabric, run_dir)  # where each rank runs; all in one run dir
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    return MODES[cfg.mode](fabric, cfg, run_dir, parts, start)


def run_job(cfg: DictConfig, run_dir: Path) -> float | None:
    """Check, build and run one job whose outputs go to ``run_dir``, which it holds alone."""
    rank = process_rank()
    if rank > 0:  # from its first line on, into its own log file (not the run's main.log)
        log_to_rank_file(run_dir, rank)
    check_config(cfg)
    resolve_precision(cfg)
    accelerator = check_environment(cfg)
    warn_config(cfg)
    with RunDirLock(run_dir) if rank == 0 else nullcontext():  # the run's other ranks share it
        start = read_start(cfg, run_dir)
        seed_everything(cfg.seed, verbose=False)
        parts = build(cfg, run_dir, start)
        return launch_processes(cfg, run_dir, accelerator, parts, start)


def launch_processes(
    cfg: DictConfig, run_dir: Path, accelerator: str, parts: Parts, start: Start
) -> float | None:
    """Start (or join) the job's processes and run the mode on each; wait for the ranks this
    process started."""
    job = prepare_job_processes(cfg, run_dir)
    try:
        fabric = Fabric(
            accelerator=accelerator,
            devices=cfg.trainer.devices,
            num_nodes=cfg.trainer.num_nodes,
            strategy=cfg.trainer.strategy,
            precision=cfg.trainer.precision,
            loggers=parts.loggers,
            callbacks=parts.callbacks,
        )
        result = fabric.launch(run_mode, cfg, run_dir, parts, start)
    except BaseException:
        finish_job(job, failed=True)
        raise
    finish_job(job)
    return result


# An absolute path: the configs are found whether this file runs as __main__ or as src.main.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with failure_ends_slurm_step():
        if cfg.sweep.trial is None:
            return run_job(cfg, run_dir)
        # A trial of an Optuna search: its outcome is also recorded on the trial
        # (src/pruning.py); a failure still raises, and the sweeper tells the study FAIL.
        return run_trial(cfg.sweep, run_dir, partial(run_job, cfg, run_dir))


if __name__ == "__main__":
    # Call main through the importable module src.main, not this __main__ copy: submitit
    # (hydra/launcher=local, slurm) pickles the task function, and cloudpickle pickles functions
    # of __main__ by value, together with everything they reach.
    from src.main import main as task_function

    task_function()
