"""The optimizer of a run (with linear lr scaling) and the learning-rate schedules not in
torch.optim.lr_scheduler (stepped once per iteration)."""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterable

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

log = logging.getLogger(__name__)


def scaled_lr(lr: float, global_batch: int, base_batch: int) -> float:
    """The linear scaling rule (Goyal et al. 2017; MMEngine's auto_scale_lr): the lr tuned for
    ``base_batch`` images per step, for ``global_batch`` images per step."""
    return lr * global_batch / base_batch


def _short(x: float) -> str:
    """6e-4, 1.2e-3: an lr as one writes it."""
    mantissa, exponent = f"{x:.4e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def build_optimizer(cfg: DictConfig, params: Iterable[nn.Parameter]) -> Optimizer:
    """``cfg.optimizer`` on ``params``. With ``trainer.scale_lr`` its lr is scaled linearly from
    ``trainer.base_batch_size`` to the global batch (``dataset.batch_size``: the images of one
    optimizer step over all processes and accumulation steps). The scheduler is built on this
    optimizer afterwards, so it starts from the scaled lr. Logs the choice once."""
    lr, batch, base = cfg.optimizer.lr, cfg.dataset.batch_size, cfg.trainer.base_batch_size
    scaled = scaled_lr(lr, batch, base)
    if cfg.trainer.scale_lr:
        log.info(
            "scale_lr: global batch %d vs base %d -> lr %s -> %s",
            batch,
            base,
            _short(lr),
            _short(scaled),
        )
        lr = scaled
    elif batch != base:
        log.info(
            "global batch %d, base %d: lr %s as configured (trainer.scale_lr=true: %s)",
            batch,
            base,
            _short(lr),
            _short(scaled),
        )
    return instantiate(cfg.optimizer, lr=lr)(params)


class WarmupCosineFactor:
    """lr factor at iteration i: i / warmup during warm-up (from 0), then cosine from 1 to 0 at
    ``total_iters``. A class rather than a closure so LambdaLR can save it in checkpoints.
    A warm-up as long as the run (a debugging run) just ramps up."""

    def __init__(self, warmup_iters: int, total_iters: int) -> None:
        self.warmup_iters = warmup_iters
        self.total_iters = total_iters

    def __call__(self, iteration: int) -> float:
        if iteration <= self.warmup_iters and self.warmup_iters > 0:
            return iteration / self.warmup_iters
        progress = (iteration - self.warmup_iters) / (self.total_iters - self.warmup_iters)
        return 0.5 * (math.cos(min(progress, 1.0) * math.pi) + 1.0)


class WarmupMultiStepFactor:
    """lr factor: i / warmup during warm-up, then gamma ** (milestones passed)."""

    def __init__(self, warmup_iters: int, milestones: list[int], gamma: float) -> None:
        self.warmup_iters = warmup_iters
        self.milestones = sorted(milestones)
        self.gamma = gamma

    def __call__(self, iteration: int) -> float:
        if iteration <= self.warmup_iters and self.warmup_iters > 0:
            return iteration / self.warmup_iters
        return self.gamma ** bisect.bisect_right(self.milestones, iteration)


def warmup_cosine(optimizer: Optimizer, warmup_iters: int, total_iters: int) -> LambdaLR:
    """The reference SRLane schedule as a torch LambdaLR."""
    return LambdaLR(optimizer, WarmupCosineFactor(warmup_iters, total_iters))


def warmup_multistep(
    optimizer: Optimizer, warmup_iters: int, milestones: list[int], gamma: float
) -> LambdaLR:
    return LambdaLR(optimizer, WarmupMultiStepFactor(warmup_iters, list(milestones), gamma))
