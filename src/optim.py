"""Learning-rate schedules not in torch.optim.lr_scheduler (stepped once per iteration)."""

from __future__ import annotations

import bisect
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


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
