"""Everything a run is built from, from its config, in the order it is built.

Before the processes start (in every process): the splits the mode needs (``build_datasets``:
reading and checking the data fails before any process exists) and the Fabric with the
loggers and callbacks of a training (``build_fabric``). Then on each rank: a training run
(``build_training``: model, optimizer, scheduler, wrappers, EMA, loaders, the Runner, the
resumed state), or the model and loaders of validate / test / predict (``build_inference_model``,
``eval_loader``). Each part comes from its config group's ``_target_`` and is logged. The model
is reached through its plugin (src/models/registry.py), never by name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from lightning.fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Subset

from src.data import EpochSampler, build_dataset, collate_lanes, configure_training_input
from src.data.calibration import calibration_images, spread
from src.data.images import ImageListDataset
from src.data.loader_workers import stop_loader_workers
from src.data.video import list_videos
from src.engine.checkpoint import Start, evaluation_weights
from src.engine.loggers import close_loggers
from src.engine.optim import build_optimizer
from src.engine.runner import Runner
from src.engine.stop_signals import InterruptWatch, PreemptionWatch
from src.inference.compiled import inference_model
from src.inference.evaluate import LaneEvaluator
from src.launch.optuna_trial import OptunaPruning
from src.models.registry import plugin_for

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One job as its modes see it: the config, where it writes, what it starts from, its data,
    and (on each rank) its Fabric."""

    cfg: DictConfig
    run_dir: Path
    accelerator: str  # "cpu" or "gpu"
    start: Start
    datasets: dict[str, Dataset]
    fabric: Fabric | None = None
    callbacks: list[Any] = field(default_factory=list)  # also the Fabric's (fabric.call)


def instantiate(node: Any, **kwargs: Any) -> Any:
    """Hydra's instantiate, raising the part's own error: Hydra wraps it in an
    InstantiationException whose message buries the part's (which names the problem)."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if err.__cause__ is None:
            raise
        raise err.__cause__ from None


# ------------------------------------------------------------- before the processes start
def build_datasets(cfg: DictConfig) -> dict[str, Dataset]:
    """The splits the mode needs; training items carry the model's targets. Export needs none;
    videos are read frame by frame as they are predicted."""
    data = cfg.dataset
    if cfg.mode == "train":
        targets = plugin_for(cfg.model._target_).training_targets
        return {
            "train": build_dataset(data, data.train_split, True, cfg.seed, targets),
            "val": build_dataset(data, data.val_split, False, cfg.seed),
        }
    calibration = {"calibration": int8_calibration_set(cfg)} if cfg.evaluation.int8 else {}
    if cfg.mode in ("validate", "test"):
        split = data.val_split if cfg.mode == "validate" else data.test_split
        return {cfg.mode: build_dataset(data, split, False, cfg.seed), **calibration}
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


def build_fabric(run: Run) -> Fabric:
    """The run's Fabric; a training also gets its logger and callbacks (Fabric calls them)."""
    cfg, trainer = run.cfg, run.cfg.trainer
    loggers = []
    if cfg.mode == "train":
        resume_step = run.start.saved["train_state"]["step"] if run.start.saved else None
        loggers = [instantiate(cfg.logger, run_dir=run.run_dir, resume_step=resume_step)]
        log.info("logger: %s", cfg.logger._target_)
        run.callbacks = build_callbacks(cfg)
    return Fabric(
        accelerator=run.accelerator,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=trainer.precision,
        loggers=loggers,
        callbacks=run.callbacks,
    )


def build_callbacks(cfg: DictConfig) -> list[Any]:
    callbacks = []
    for name, callback_cfg in cfg.callbacks.items():
        callbacks.append(instantiate(callback_cfg))
        log.info("callback %s: %s", name, callback_cfg._target_)
    if cfg.sweep.trial is not None:  # a trial of an Optuna search: report, stop when pruned
        callbacks.append(OptunaPruning(cfg.sweep))
        log.info("callback optuna_pruning: trial %d of %s", cfg.sweep.trial, cfg.sweep.study_name)
    return callbacks


# ------------------------------------------------------------------------------ on each rank
def build_model(run: Run) -> nn.Module:
    """The model from its config group. A resumed or evaluated checkpoint's weights replace its
    initialisation, so those skip the ImageNet weights (no download); load_from's weights are
    loaded into a fresh training."""
    cfg, start = run.cfg, run.start
    plugin = plugin_for(cfg.model._target_)
    replaced = cfg.mode != "train" or start.path is not None or cfg.load_from
    model = instantiate(cfg.model, **({"pretrained_backbone": None} if replaced else {}))
    log.info("model: %s (%s)", cfg.model._target_, OmegaConf.select(cfg, "model.backbone"))
    if cfg.mode != "train" and start.path is not None:
        weights = evaluation_weights(start.saved, start.path)
        log.info("loaded weights: %s", plugin.load_weights(model, weights, name=str(start.path)))
    elif cfg.mode == "train" and cfg.load_from:
        log.info("loaded weights: %s", plugin.load_weights(model, cfg.load_from))
    return model


@dataclass
class Training:
    """A training run as ``build_training`` makes it: the loop and what it loops over."""

    runner: Runner
    train_loader: DataLoader
    train_sampler: EpochSampler
    val_loader: DataLoader
    make_evaluator: Callable[[], LaneEvaluator]

    def fit(self) -> float:
        """Train (Ctrl-C / SIGTERM stop at a step boundary); the loggers' runs end either way,
        before the next job of a multirun. Returns the best validation metric."""
        status = "failed"
        try:
            with self.runner.interrupts:
                best = self.runner.fit(
                    self.train_loader, self.train_sampler, self.val_loader, self.make_evaluator
                )
            status = "success"
        finally:
            # else exit may wait 5 s per live worker (src/data/loader_workers.py)
            stop_loader_workers(self.train_loader, self.val_loader)
            close_loggers(self.runner.fabric.loggers, status)
        return best


def build_training(run: Run) -> Training:
    """Everything a training is made of on this rank, in the order it is made; a resumed run
    then takes the checkpoint's state."""
    cfg, fabric = run.cfg, run.fabric
    model = build_model(run)
    optimizer = build_optimizer(cfg, model.parameters())  # trainer.scale_lr
    log.info("optimizer: %s", cfg.optimizer._target_)
    scheduler = instantiate(cfg.scheduler)(optimizer)
    log.info("scheduler: %s", cfg.scheduler._target_)
    if cfg.trainer.sync_batchnorm and fabric.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.trainer.compile:
        model = torch.compile(model)  # Fabric re-applies it around the DDP wrapper
    model, optimizer = fabric.setup(model, optimizer)
    ema = None
    if cfg.trainer.ema_decay:
        ema_avg = get_ema_multi_avg_fn(cfg.trainer.ema_decay)
        ema = AveragedModel(model.module, multi_avg_fn=ema_avg, use_buffers=True)
    train_set = run.datasets["train"]
    world, rank = fabric.world_size, fabric.global_rank
    micro_batch = cfg.dataset.batch_size // (world * cfg.trainer.accumulate_grad_batches)
    sampler = EpochSampler(len(train_set), True, seed=cfg.seed, num_replicas=world, rank=rank)
    watches = (PreemptionWatch(), InterruptWatch())
    runner = Runner(
        cfg, fabric, run.run_dir, model, optimizer, scheduler, ema, run.callbacks, *watches
    )
    if run.start.path is not None:
        runner.restore(run.start.saved, run.start.path)
    # uint8 hand-over; the image steps in the workers or on the device
    # (src/data/device_input.py); the runner's device_batches moves the batches.
    configure_training_input(train_set, cfg.dataset.augment_on, fabric.device)
    return Training(
        runner,
        make_loader(fabric, train_set, sampler, micro_batch, cfg, move_to_device=False),
        sampler,
        eval_loader(fabric, run.datasets["val"], cfg),
        partial(make_evaluator, fabric, cfg),
    )


def make_loader(
    fabric: Fabric,
    dataset: Dataset,
    sampler: EpochSampler,
    batch_size: int,
    cfg: DictConfig,
    move_to_device: bool = True,
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
    return fabric.setup_dataloaders(
        loader, use_distributed_sampler=False, move_to_device=move_to_device
    )


def eval_loader(fabric: Fabric, dataset: Dataset, cfg: DictConfig) -> DataLoader:
    """Every rank scores a disjoint shard of the split, in order."""
    sampler = EpochSampler(
        len(dataset), shuffle=False, num_replicas=fabric.world_size, rank=fabric.global_rank
    )
    return make_loader(fabric, dataset, sampler, cfg.dataset.eval_batch_size, cfg)


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


def build_inference_model(run: Run) -> nn.Module:
    """The model as mode=validate/test/predict run it (evaluation.compile, evaluation.int8)."""
    model = run.fabric.setup(build_model(run)).module
    return inference_model(model, run.cfg.evaluation.compile, int8_calibration(run))


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


def int8_calibration(run: Run) -> Iterator[Tensor] | None:
    """evaluation.int8: the image batches of the calibration set, the same on every rank (so all
    ranks quantize alike); unreadable images skipped under dataset.skip_unreadable_images are
    left out."""
    cfg = run.cfg
    if not cfg.evaluation.int8:
        return None
    # Read in worker processes like every split: OpenCV used in this process before the
    # evaluation loader forks its workers deadlocks them (its thread pool's lock is copied held).
    loader = DataLoader(
        run.datasets["calibration"],
        cfg.dataset.eval_batch_size,
        num_workers=cfg.dataset.num_workers,
        collate_fn=collate_lanes,
    )

    def readable(batch: dict[str, Any]) -> Tensor:
        return batch["img"][torch.tensor([not meta.get("skipped") for meta in batch["meta"]])]

    return (run.fabric.to_device(img) for img in map(readable, loader) if len(img))
