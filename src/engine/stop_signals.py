"""Signals that end training at a step boundary: SLURM's early warning, Ctrl-C and SIGTERM.

submitit asks SLURM to send SIGUSR2 some time before the job's time limit (signal_delay_s) and
handles it by resubmitting the job (requeue) and exiting. That handler does not know about the
training state, so this module wraps it: the signal only raises a flag; the training loop sees it
at the next iteration boundary, writes the last checkpoint on every rank, and then hands over to
submitit, which requeues. The requeued job runs the same command in the same run directory, and
resume=auto continues from that checkpoint.

A job requeued without warning (``scontrol requeue``, node failure) resumes from the last
periodic checkpoint instead.

Ctrl-C and SIGTERM (``InterruptWatch``) also only raise a flag: the loop ends the current step
and any checkpoint write in it, says at which iteration it stopped and where the last checkpoint
is, and exits non-zero; the same command resumes.
"""

from __future__ import annotations

import logging
import signal
import threading
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


class RunInterrupted(SystemExit):
    """Training stopped on SIGINT / SIGTERM at a step boundary; the exit code is 128 + signal."""


class InterruptWatch:
    """SIGINT (Ctrl-C) and SIGTERM during training become a flag: the loop finishes the current
    step, including a checkpoint write in progress, then stops with a message and a non-zero exit
    code. A second signal stops at once. SIGTERM is left to submitit inside its jobs (its
    handler bypasses the SLURM's termination warning); the handlers are installed from the main
    thread only, for the duration of the ``with`` block."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptWatch:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            if signum == signal.SIGTERM and current not in (signal.SIG_DFL, None):
                continue  # someone else's (submitit's) handler
            self._previous[signum] = current
            signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.signum = signum
        log.warning(
            "received %s: stopping after the current iteration (again to stop at once)",
            signal.Signals(signum).name,
        )

    def requested(self, fabric: Fabric, synced: bool) -> bool:
        """True on every rank once any rank was signalled. With several processes the ranks
        agree at steps that synchronise anyway (``synced``: a log row, validation or
        checkpoint), so there is no extra synchronisation per step."""
        if fabric.world_size == 1:
            return self.signum is not None
        if not synced:
            return False
        flag = torch.tensor(float(self.signum or 0), device=fabric.device)
        signum = int(fabric.all_reduce(flag, reduce_op="max").item())
        if signum and self.signum is None:
            self.signum = signum
        return bool(signum)
