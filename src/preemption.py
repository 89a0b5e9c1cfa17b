"""Checkpoint before SLURM takes the job away.

submitit asks SLURM to send SIGUSR2 some time before the job's time limit (signal_delay_s) and
handles it by resubmitting the job (requeue) and exiting. That handler does not know about the
training state, so this module wraps it: the signal only raises a flag; the training loop sees it
at the next iteration boundary, writes the last checkpoint on every rank, and then hands over to
submitit, which requeues. The requeued job runs the same command in the same run directory, and
resume=auto continues from that checkpoint.

A job requeued without warning (``scontrol requeue``, node failure) resumes from the last
periodic checkpoint instead.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

import torch
from lightning.fabric import Fabric

log = logging.getLogger(__name__)


class PreemptionWatch:
    """Turns the submitit's early-warning signal into a flag checked by the training loop."""

    def __init__(self, signum: int = signal.SIGUSR2) -> None:
        self.signum = signum
        self.requested = False
        self._handover: Any = None
        previous = signal.getsignal(signum)
        if callable(previous):  # installed by submitit inside a job; absent otherwise
            self._handover = previous
            signal.signal(signum, self._on_signal)

    @property
    def active(self) -> bool:
        return self._handover is not None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.warning("received %s: checkpointing at the next iteration", signal.Signals(signum).name)
        self.requested = True

    def should_stop(self, fabric: Fabric) -> bool:
        """True on every rank once any rank was signalled (ranks must checkpoint together)."""
        if not self.active:
            return False
        flag = torch.tensor(float(self.requested), device=fabric.device)
        if fabric.world_size > 1:
            flag = fabric.all_reduce(flag, reduce_op="max")
        return bool(flag.item())

    def hand_over(self) -> None:
        """Let submitit requeue the job and exit (rank 0); other ranks return and stop."""
        log.warning("checkpoint written: handing over to submitit to requeue the job")
        self._handover(self.signum, None)
