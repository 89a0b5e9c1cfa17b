"""Callbacks: code that runs at fixed points of training without changing the loop.

Configured in the ``callbacks`` group (conf/callbacks/, one named entry per callback, each a
``_target_`` with its arguments; ``callbacks=[early_stopping,keep_last]`` combines them). The
runner calls every callback that defines a hook, through Fabric (``fabric.call``), on every rank:

- ``on_train_start(runner)``: before the first iteration (also after a resume);
- ``on_optimizer_step(runner)``: after each optimizer step (``runner.state.step`` counts it);
- ``on_validation_end(runner, metrics)``: after each validation, with the flat metric dict;
- ``on_checkpoint_saved(runner, path)``: after a checkpoint file is complete on disk;
- ``on_train_end(runner)``: after the final validation and checkpoint.

``runner`` gives ``state`` (step, epoch, best_metric, ...), ``fabric``, ``run_dir`` and
``request_stop(reason)``. A callback with ``state_dict()`` / ``load_state_dict()`` has its state
saved in every training checkpoint and restored on resume.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import IO, Any, Protocol

from src.run_dir import LAST_CKPT as LAST
from src.run_dir import write_atomic

log = logging.getLogger(__name__)


class RunnerView(Protocol):
    """What a callback may use of the runner."""

    state: Any
    fabric: Any
    run_dir: Path

    def request_stop(self, reason: str) -> None: ...


class EarlyStopping:
    """Stop training after ``patience`` validations without an improvement of ``monitor`` by
    more than ``min_delta``. The stop is saved in the checkpoint: a resumed run does not train
    on."""

    def __init__(
        self, monitor: str = "F1", patience: int = 3, min_delta: float = 0.0, mode: str = "max"
    ) -> None:
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience={patience} must be >= 1 (validations)")
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping: mode={mode!r} must be 'max' or 'min'")
        self.monitor, self.patience, self.min_delta, self.mode = monitor, patience, min_delta, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.bad_validations = 0

    def _improved(self, value: float) -> bool:
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_validation_end(self, runner: RunnerView, metrics: dict[str, Any]) -> None:
        if self.monitor not in metrics:
            raise KeyError(
                f"EarlyStopping: monitor={self.monitor!r} is not a validation metric "
                f"(available: {sorted(k for k in metrics if k != 'details')})"
            )
        value = float(metrics[self.monitor])
        if self._improved(value):
            self.best, self.bad_validations = value, 0
            return
        self.bad_validations += 1
        if self.bad_validations >= self.patience:
            runner.request_stop(
                f"early stopping: val {self.monitor} did not improve on {self.best:.4f} by more "
                f"than {self.min_delta} in {self.patience} validation(s)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_validations = float(state["best"]), int(state["bad_validations"])


ITER_CHECKPOINT = re.compile(r"iter_(\d+)\.ckpt")


class KeepLastCheckpoints:
    """Keep the last ``keep`` periodic checkpoints as ``checkpoints/iter_<step>.ckpt`` besides
    ``last.ckpt`` (and ``best.ckpt``, never touched). Each new file is complete before the oldest
    is deleted, so a crash at any moment loses no checkpoint (at worst one too many remains,
    removed at the next save)."""

    def __init__(self, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"KeepLastCheckpoints: keep={keep} must be >= 1")
        self.keep = keep

    def on_checkpoint_saved(self, runner: RunnerView, path: Path) -> None:
        if path.name != LAST or not runner.fabric.is_global_zero:
            return
        target = path.with_name(f"iter_{runner.state.step:06d}.ckpt")
        try:
            # The same bytes, no copy (last.ckpt is later replaced, not edited); a link appears
            # whole, so no temporary file is needed.
            target.unlink(missing_ok=True)
            os.link(path, target)
        except OSError:  # file systems without hard links
            write_atomic(target, lambda out: _copy_into(path, out))
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        kept = sorted(
            (int(m.group(1)), p)
            for p in directory.iterdir()
            if (m := ITER_CHECKPOINT.fullmatch(p.name))
        )
        for _, old in kept[: max(0, len(kept) - self.keep)]:
            old.unlink()
            log.info("removed %s (keeping the last %d periodic checkpoints)", old, self.keep)


def _copy_into(path: Path, out: IO[bytes]) -> None:
    with open(path, "rb") as source:
        shutil.copyfileobj(source, out)
