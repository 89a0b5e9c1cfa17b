"""Entry point: ``python -m src.main [group=option] [key=value ...]``.

Composes the Hydra config, checks it and the machine before any work, builds every component
(datasets, model, optimizer, scheduler, Fabric), then runs one mode: train (default), validate,
test or predict. Returns the validation metric so that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric import Fabric, seed_everything
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset

from src.checkpoint import BEST, LAST, checkpoint_dir, config_differences, resume_path
from src.config import ConfigError, register_configs, validate_config
from src.data import EpochSampler, build_dataset, collate_lanes
from src.data.images import ImageListDataset
from src.distributed import finish_job, log_to_rank_file, prepare_job_processes, process_rank
from src.evaluation import LaneEvaluator
from src.loggers import build_logger
from src.metrics import CULANE_CATEGORIES
from src.models.srlane import load_weights
from src.preemption import PreemptionWatch
from src.runner import Runner

log = logging.getLogger(__name__)

register_configs()


def check_environment(cfg: DictConfig) -> str:
    """Refuse, before any work, what this machine cannot run; returns the accelerator used."""
    trainer = cfg.trainer
    accelerator = trainer.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        accelerator = "gpu"
        available = torch.cuda.device_count()
        if available == 0:
            raise ConfigError(
                f"trainer.accelerator={trainer.accelerator} but no CUDA GPU is visible "
                "(torch.cuda.is_available() is False): use trainer=cpu, or install the CUDA "
                "build of torch (see README)"
            )
        if trainer.devices > available:
            raise ConfigError(
                f"trainer.devices={trainer.devices} but only {available} CUDA GPU(s) are visible"
            )
        if trainer.precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"trainer.precision=bf16-mixed but {torch.cuda.get_device_name()} has no bf16 "
                "support: use 16-mixed or 32-true"
            )
    else:
        cores = os.cpu_count() or 1
        if trainer.devices > cores:
            raise ConfigError(
                f"trainer.devices={trainer.devices} CPU processes but this machine has {cores} "
                "cores"
            )
        if trainer.precision == "16-mixed":
            raise ConfigError(
                "trainer.precision=16-mixed needs a CUDA GPU (fp16 autocast is not supported "
                "for training on the CPU): use bf16-mixed or 32-true"
            )
    if cfg.load_from and not Path(cfg.load_from).is_file():
        raise ConfigError(f"load_from={cfg.load_from}: no such file")
    world = trainer.devices * trainer.num_nodes
    per_step = world * trainer.accumulate_grad_batches
    if cfg.mode == "train" and cfg.dataset.batch_size % per_step != 0:
        raise ConfigError(
            f"dataset.batch_size={cfg.dataset.batch_size} (the global batch per iteration) must "
            f"be divisible by devices x num_nodes x accumulate_grad_batches = {per_step}"
        )
    return accelerator


def eval_weights(cfg: DictConfig, run_dir: Path) -> Path:
    """validate / test / predict: load_from, else this run's best (or last) checkpoint."""
    if cfg.load_from:
        return Path(cfg.load_from)
    path = checkpoint_dir(run_dir) / (BEST if cfg.eval_checkpoint == "best" else LAST)
    if not path.is_file():
        raise ConfigError(
            f"mode={cfg.mode} needs weights: load_from=<checkpoint> (this project's or a "
            f"reference SRLane file), or run_name=<a trained run> with {path.name} in "
            f"{path.parent}"
        )
    return path


def make_loader(
    dataset: Dataset, sampler: EpochSampler, batch_size: int, workers: int, seed: int
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_lanes,
        drop_last=sampler.shuffle,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        # Own generator: creating loader iterators must not consume the global torch RNG.
        generator=torch.Generator().manual_seed(seed),
    )


# An absolute path: the configs are found whether this file runs as __main__ or as src.main.
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        return launch(cfg, Path(HydraConfig.get().runtime.output_dir))
    except Exception:
        if cfg.get("failed_trial_value") is None:
            raise
        # A hyper-parameter search goes on: the failure is logged, the sweeper gets a value.
        log.exception("this trial failed; reporting %s to the sweeper", cfg.failed_trial_value)
        return float(cfg.failed_trial_value)


def launch(cfg: DictConfig, run_dir: Path) -> float | None:
    """Check, build and run one job whose outputs go to ``run_dir``."""
    validate_config(cfg)
    accelerator = check_environment(cfg)
    resume = resume_path(run_dir, cfg.resume) if cfg.mode == "train" else None
    resume_step = None
    if resume is not None:
        saved = torch.load(resume, map_location="cpu", weights_only=True, mmap=True)
        differences = config_differences(saved["config"], OmegaConf.to_container(cfg, resolve=True))
        if differences:
            raise ConfigError(
                f"{resume} was trained with a different config, so resuming it would mix two "
                "runs (use another run_name, or resume=never in a new run dir):\n  "
                + "\n  ".join(differences)
            )
        resume_step = int(saved["train_state"]["step"])
    weights = eval_weights(cfg, run_dir) if cfg.mode != "train" else cfg.load_from
    seed_everything(cfg.seed, verbose=False)

    # Data first: a missing dataset fails here, before the model or any process is started.
    data = cfg.dataset
    if cfg.mode == "train":
        splits = {"train": build_dataset(data, data.train_split, training=True, seed=cfg.seed)}
        splits["val"] = build_dataset(data, data.val_split, training=False, seed=cfg.seed)
    elif cfg.mode in ("validate", "test"):
        split = data.val_split if cfg.mode == "validate" else data.test_split
        splits = {cfg.mode: build_dataset(data, split, training=False, seed=cfg.seed)}
    else:
        cut = cfg.predict.cut_height if cfg.predict.cut_height is not None else data.cut_height
        splits = {"predict": ImageListDataset(cfg.predict.input, data.img_w, data.img_h, cut)}

    model = instantiate(cfg.model)
    if weights:
        report = load_weights(model, _weights_to_evaluate(Path(weights), cfg.mode))
        log.info("loaded weights from %s: %s", weights, report)
    optimizer = scheduler = None
    if cfg.mode == "train":
        optimizer = instantiate(cfg.optimizer)(model.parameters())
        scheduler = instantiate(cfg.scheduler)(optimizer)

    job = prepare_job_processes(cfg, run_dir)
    rank = process_rank()
    if rank > 0:
        log_to_rank_file(run_dir, rank)
    try:
        fabric = Fabric(
            accelerator=accelerator,
            devices=cfg.trainer.devices,
            num_nodes=cfg.trainer.num_nodes,
            strategy=cfg.trainer.strategy,
            precision=cfg.trainer.precision,
            loggers=[build_logger(cfg.logger, run_dir, run_dir.name, resume_step)]
            if cfg.mode == "train"
            else [],
        )
        result = fabric.launch(run, cfg, run_dir, model, optimizer, scheduler, splits, resume)
    except BaseException:
        finish_job(job, failed=True)
        raise
    finish_job(job)
    return result


def run(
    fabric: Fabric,
    cfg: DictConfig,
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    splits: dict[str, Dataset],
    resume: Path | None,
) -> float | None:
    """Everything after the processes exist: one call per rank."""
    if cfg.trainer.deterministic:
        torch.use_deterministic_algorithms(True)
    else:
        torch.backends.cudnn.benchmark = True  # as the reference; fixed input sizes
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    world, rank = fabric.world_size, fabric.global_rank
    data = cfg.dataset

    def eval_loader(dataset: Dataset) -> DataLoader:
        sampler = EpochSampler(len(dataset), shuffle=False, num_replicas=world, rank=rank)
        loader = make_loader(dataset, sampler, data.eval_batch_size, data.num_workers, cfg.seed)
        return fabric.setup_dataloaders(loader, use_distributed_sampler=False)

    def evaluator(prediction_dir: Path | None = None, categories: Any = None) -> LaneEvaluator:
        ev = LaneEvaluator(data.name, cfg.evaluation, categories, prediction_dir, rank)
        ev.metric.to(fabric.device)  # torchmetrics syncs on the process group's device
        return ev

    if cfg.mode != "train":
        model = fabric.setup(model)
        runner = Runner(cfg, fabric, run_dir, model)
        if cfg.mode == "predict":
            runner.predict(
                eval_loader(splits["predict"]), run_dir / "predictions", cfg.predict.draw
            )
            return None
        dataset = splits[cfg.mode]
        # CULane's test samples carry their category: report F1 per category too.
        categories = CULANE_CATEGORIES if cfg.mode == "test" and data.name == "culane" else None
        prediction_dir = run_dir / "predictions" if cfg.mode == "test" else None
        metrics = runner.test(eval_loader(dataset), evaluator(prediction_dir, categories), cfg.mode)
        return metrics["F1"]

    if cfg.trainer.compile:
        model = torch.compile(model)  # Fabric re-applies it around the DDP wrapper
    model, optimizer = fabric.setup(model, optimizer)
    ema = None
    if cfg.trainer.ema_decay:
        ema = AveragedModel(
            model.module,
            multi_avg_fn=get_ema_multi_avg_fn(cfg.trainer.ema_decay),
            use_buffers=True,
        )
    micro_batch = data.batch_size // (world * cfg.trainer.accumulate_grad_batches)
    train_sampler = EpochSampler(
        len(splits["train"]), shuffle=True, seed=cfg.seed, num_replicas=world, rank=rank
    )
    train_loader = fabric.setup_dataloaders(
        make_loader(splits["train"], train_sampler, micro_batch, data.num_workers, cfg.seed),
        use_distributed_sampler=False,
    )
    runner = Runner(cfg, fabric, run_dir, model, optimizer, scheduler, ema, PreemptionWatch())
    if resume is not None:
        runner.restore(resume)
    status = "failed"
    try:
        best = runner.fit(train_loader, train_sampler, eval_loader(splits["val"]), evaluator)
        status = "success"
    finally:
        for logger in fabric.loggers:  # ends the logger run (wandb) before the next job
            logger.finalize(status)
    return best


def _weights_to_evaluate(path: Path, mode: str) -> Path | dict[str, Any]:
    """The file itself, except that evaluating a checkpoint of a run trained with EMA uses the
    EMA weights (those were validated and selected)."""
    if mode == "train":
        return path
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state, dict) and isinstance(state.get("ema"), dict):
        log.info("%s holds EMA weights: evaluating those", path)
        return {k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"}
    return path


if __name__ == "__main__":
    # Call main through the importable module src.main, not this __main__ copy: submitit
    # (hydra/launcher=local, slurm) pickles the task function, and cloudpickle pickles functions
    # of __main__ by value, together with everything they reach.
    from src.main import main as task_function

    task_function()
