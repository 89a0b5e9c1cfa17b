"""What every job does around its mode: ``prepared_job`` before it (own log file, checks, run
lock, the checkpoint it starts from, the seed, the data), ``run_on_every_rank`` to start the
processes (src/launch/processes.py) and run the mode on each of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import torch
from lightning.fabric import Fabric, seed_everything
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError
from src.engine.build import Run, build_datasets, build_fabric
from src.engine.checkpoint import read_start
from src.engine.preflight import check_config, check_environment, resolve_precision, warn_config
from src.engine.run_lock import RunDirLock
from src.launch.processes import (
    announce_rank,
    finish_job,
    log_to_rank_file,
    prepare_job_processes,
    process_rank,
)
from src.models.registry import resolve_load_from
from src.run_dir import CONFIG_YAML, write_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")


@contextmanager
def prepared_job(cfg: DictConfig, run_dir: Path) -> Iterator[Run]:
    """Everything before the mode, in order, refusing what cannot run before any work: this
    rank's log file (ranks > 0), the config and machine checks, the run lock (rank 0; the other
    ranks share it), the checkpoint the run starts from (read once), the seed, the data."""
    rank = process_rank()
    if rank > 0:  # from its first line on, into its own log file (not the run's main.log)
        log_to_rank_file(run_dir, rank)
    check_config(cfg)
    if cfg.load_from:  # a released checkpoint's name (<model>:<release>) -> its file, fetched once
        try:
            cfg.load_from = resolve_load_from(cfg.load_from, cfg.model)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    resolve_precision(cfg)
    accelerator = check_environment(cfg)
    warn_config(cfg)
    with RunDirLock(run_dir) if rank == 0 else nullcontext():
        start = read_start(cfg, run_dir)
        seed_everything(cfg.seed, verbose=False)
        yield Run(cfg, run_dir, accelerator, start, build_datasets(cfg))


def run_on_every_rank(run: Run, mode: Callable[[Run], T]) -> T:
    """Start (or join) the job's processes, run ``mode`` on each, wait for the ranks this process
    started; returns rank 0's result."""
    job = prepare_job_processes(run.cfg, run.run_dir)
    try:
        result = build_fabric(run).launch(_on_rank, run, mode)
    except BaseException:
        finish_job(job, failed=True)
        raise
    finish_job(job)
    return result


def _on_rank(fabric: Fabric, run: Run, mode: Callable[[Run], T]) -> T:
    run.fabric = fabric
    set_determinism(run.cfg.trainer.deterministic)
    announce_rank(fabric, run.run_dir)  # where each rank runs; all in one run dir
    if fabric.is_global_zero:
        write_atomic(run.run_dir / CONFIG_YAML, OmegaConf.to_yaml(run.cfg, resolve=True))
    return mode(run)


def set_determinism(deterministic: bool) -> None:
    """trainer.deterministic: deterministic kernels where torch has them (cuBLAS needs its
    workspace setting before its first use); ops without one warn instead of failing."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True  # as the reference; fixed input sizes
