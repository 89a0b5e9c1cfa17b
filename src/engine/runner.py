"""The training loop, on Lightning Fabric.

``Runner.fit`` reads top to bottom: micro-batches come from ``_micro_batches`` (which knows
epochs and the resume position), each optimizer step is followed by the same sequence: log row,
epoch rollover, validation, periodic checkpoint, preemption and stop checks. One iteration = one
optimizer step over ``accumulate_grad_batches`` micro-batches; validation every N epochs and/or
N iterations and at the end. src/engine/build.py builds it; scoring a split is
src/inference/evaluate.py's; checkpoint files are src/engine/checkpoint.py's; code at fixed
points of the loop is a callback (src/engine/callbacks.py), called through ``fabric.call``.
"""

from __future__ import annotations

import datetime
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from src.data import EpochSampler, device_batches
from src.engine.checkpoint import (
    capture_rng_state,
    restore_objects,
    restore_rng_state,
    save_checkpoint,
)
from src.engine.curves import plot_curves
from src.engine.progress import TrainProgress
from src.engine.stop_signals import InterruptWatch, PreemptionWatch, RunInterrupted
from src.inference.evaluate import LaneEvaluator, evaluate, format_metrics
from src.metrics.tusimple import result_note
from src.run_dir import (
    BEST_CKPT,
    CURVES_PNG,
    LAST_CKPT,
    VAL_IMAGES_DIR,
    checkpoint_path,
    update_metrics_json,
)

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """Counters saved in every checkpoint; with the RNG states they make resume exact."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed by this rank
    best_metric: float = -math.inf
    best_step: int = -1
    last_val_step: int = -1
    # Sums of the model's loss outputs since the last logged row (tensors while training, floats
    # in checkpoints), so that a run resumed between two log steps logs the same rows.
    log_sums: dict[str, Any] = field(default_factory=dict)
    log_steps: int = 0
    stop_reason: str | None = None  # set by request_stop (e.g. early stopping); final
    history: list[dict[str, float]] = field(default_factory=list)  # logged rows, for curves


class StepTimer:
    """Seconds spent waiting for data and per optimizer step, summed since the last log row."""

    def __init__(self) -> None:
        self.data_s = self.batch_s = 0.0
        self.tick = time.perf_counter()

    def batch_arrived(self) -> None:
        self.data_s += time.perf_counter() - self.tick

    def restart(self) -> None:
        """Start the next interval now (after a micro-batch or a validation)."""
        self.tick = time.perf_counter()

    def step_done(self) -> None:
        now = time.perf_counter()
        self.batch_s += now - self.tick
        self.tick = now

    def reset(self) -> None:
        self.data_s = self.batch_s = 0.0


class Runner:
    def __init__(
        self,
        cfg: DictConfig,
        fabric: Fabric,
        run_dir: Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        ema: AveragedModel | None = None,
        callbacks: Sequence[Any] = (),
        preemption: PreemptionWatch | None = None,
        interrupts: InterruptWatch | None = None,
    ) -> None:
        self.cfg = cfg
        self.trainer = cfg.trainer
        self.fabric = fabric
        self.run_dir = run_dir
        self.model = model  # Fabric-wrapped
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema = ema
        self.callbacks = list(callbacks)  # the Fabric's callbacks: their state is checkpointed
        self.preemption = preemption
        self.interrupts = interrupts
        self.state = TrainState()
        self._last_saved_step = -1  # step of the newest last.ckpt written by this process
        # First iteration whose loss was not finite (-1: none), kept on the device: checked
        # without a per-step sync, before anything is logged, validated or saved.
        self._first_nonfinite: torch.Tensor | None = None
        self._checked_step = -1

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train_loader: DataLoader,
        train_sampler: EpochSampler,
        val_loader: DataLoader,
        make_evaluator: Callable[[], LaneEvaluator],
    ) -> float:
        """Train to total_iter; returns the best validation metric (the sweepers' objective)."""
        state, trainer = self.state, self.trainer
        if state.stop_reason:
            log.info("not training on: %s (at iteration %d)", state.stop_reason, state.step)
            return state.best_metric
        batches_per_epoch = self._batches_per_epoch(train_loader, train_sampler)
        progress = self._start_training(batches_per_epoch)
        timer = StepTimer()
        for batch in self._micro_batches(train_loader, train_sampler, batches_per_epoch):
            timer.batch_arrived()
            if not self._forward_backward(batch):
                timer.restart()  # still accumulating gradients
                continue
            self._optimizer_step()
            timer.step_done()
            if state.step % trainer.log_every_iters == 0 or state.step == trainer.total_iter:
                self._log_train_row(timer, progress)
            epoch_ended = self._roll_epoch_if_done(batches_per_epoch)
            if self._validation_due(epoch_ended):
                self._validate_and_select(val_loader, make_evaluator())
                timer.restart()
            # After the validation: the checkpoint describes everything that happened at
            # this step (a resumed run knows this step's best result).
            if state.step % trainer.checkpoint_every_iters == 0:
                self.save(LAST_CKPT)
            if self.preemption is not None and self.preemption.should_stop(self.fabric):
                self.save(LAST_CKPT)
                progress.stop()
                self.preemption.hand_over()  # rank 0: requeued by submitit, exits here
                return state.best_metric
            self._stop_if_interrupted(progress)
            if state.stop_reason or state.step >= trainer.total_iter:
                break
        progress.stop()
        self._finish_training(val_loader, make_evaluator)
        return state.best_metric

    def _start_training(self, batches_per_epoch: int) -> TrainProgress:
        state, trainer = self.state, self.trainer
        log.info(
            "training from iteration %d to %d (%d iterations per epoch)",
            state.step,
            trainer.total_iter,
            batches_per_epoch // trainer.accumulate_grad_batches,
        )
        self.fabric.call("on_train_start", runner=self)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        show = self.fabric.is_global_zero and trainer.progress
        return TrainProgress(trainer.total_iter, state.step, show)

    def _finish_training(
        self, val_loader: DataLoader, make_evaluator: Callable[[], LaneEvaluator]
    ) -> None:
        """The final validation and checkpoint (unless this step has them), then the summary."""
        state = self.state
        if state.stop_reason:
            log.info("training stopped at iteration %d: %s", state.step, state.stop_reason)
        if state.last_val_step != state.step:
            self._validate_and_select(val_loader, make_evaluator())
        if self._last_saved_step != state.step:
            self.save(LAST_CKPT)
        self.fabric.call("on_train_end", runner=self)
        self._write_summary()

    def _stop_if_interrupted(self, progress: TrainProgress) -> None:
        """Ctrl-C / SIGTERM: end here, after this step and its checkpoint (if any)."""
        synced = self._checked_step == self.state.step  # this step logged, validated or saved
        if self.interrupts is None or not self.interrupts.requested(self.fabric, synced):
            return
        progress.stop()
        signum = self.interrupts.signum or signal.SIGINT
        last = self._last_saved_step
        where = f"iteration {last}" if last >= 0 else "none written by this run"
        log.error(
            "interrupted (%s) at iteration %d; last checkpoint: %s; rerun the same command to "
            "resume",
            signal.Signals(signum).name,
            self.state.step,
            where,
        )
        raise RunInterrupted(128 + signum)

    def request_stop(self, reason: str) -> None:
        """End training after the current step's validation and checkpoint (callbacks)."""
        self.state.stop_reason = reason

    def _batches_per_epoch(self, loader: DataLoader, sampler: EpochSampler) -> int:
        """Whole micro-batches of a full epoch on this rank, cut to a multiple of the
        accumulation steps (an iteration never spans two epochs)."""
        accumulate = self.trainer.accumulate_grad_batches
        batches = sampler.epoch_size // loader.batch_size
        if batches < accumulate:
            raise ValueError(
                f"the training split gives {batches} batches per process, fewer than "
                f"accumulate_grad_batches={accumulate}: lower the batch size"
            )
        return batches // accumulate * accumulate

    def _micro_batches(
        self, loader: DataLoader, sampler: EpochSampler, batches_per_epoch: int
    ) -> Iterator[dict[str, Any]]:
        """Micro-batches in the order an uninterrupted run sees them, up to total_iter: each epoch
        in the sampler's seeded order, from the resume position on. ``fit`` rolls the epoch over
        after the step that ends it; this generator then moves on to the next epoch."""
        while self.state.step < self.trainer.total_iter:  # a finished run resumed: none
            self._roll_epoch_if_done(batches_per_epoch)
            epoch = self.state.epoch
            sampler.seek(epoch, skip=self.state.batch_in_epoch * loader.batch_size)
            for batch in device_batches(loader, self.fabric.device):  # float input, augmented
                self.state.batch_in_epoch += 1
                yield batch
                if self.state.epoch != epoch:
                    break

    def _roll_epoch_if_done(self, batches_per_epoch: int) -> bool:
        if self.state.batch_in_epoch < batches_per_epoch:
            return False
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        return True

    def _forward_backward(self, batch: dict[str, Any]) -> bool:
        """Loss and gradients of one micro-batch; True when an optimizer step is due. The model
        gets the batch's targets by name and returns its losses ("loss" is the total)."""
        accumulate = self.trainer.accumulate_grad_batches
        is_accumulating = self.state.batch_in_epoch % accumulate != 0
        targets = {k: v for k, v in batch.items() if k not in ("img", "meta")}
        with self.fabric.no_backward_sync(self.model, enabled=is_accumulating):
            losses = self.model(batch["img"], **targets)
            self.fabric.backward(losses["loss"] / accumulate)
        self._track_nonfinite(losses["loss"].detach())
        sums = self.state.log_sums
        for key in ("loss", *(k for k in losses if k != "loss")):
            # Tensors: no device sync until the row is logged.
            sums[key] = sums.get(key, 0.0) + losses[key].detach() / accumulate
        return not is_accumulating

    def _track_nonfinite(self, loss: torch.Tensor) -> None:
        """Remember (on the device, no sync) the first iteration whose loss is not finite."""
        if self._first_nonfinite is None:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = self._first_nonfinite
        iteration = self.state.step + 1  # the one being computed
        self._first_nonfinite = torch.where(
            (first < 0) & ~torch.isfinite(loss), torch.full_like(first, iteration), first
        )

    def _check_finite(self) -> None:
        """Refuse to log, validate or save once the loss or the weights went non-finite: a NaN
        model would be checkpointed, validated (it predicts nothing: TuSimple F1 0.667) and
        kept as best. One sync per checked step (those log, validate or save anyway)."""
        if self._checked_step == self.state.step:
            return
        self._checked_step = self.state.step
        weights_ok = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
        first = self._first_nonfinite
        if first is None:
            first = torch.full((), -1, dtype=torch.long, device=weights_ok.device)
        status = torch.stack([first.float(), (~weights_ok).float()])
        if self.fabric.world_size > 1:
            status = self.fabric.all_reduce(status, reduce_op="max")
        first_bad, weights_bad = status.tolist()
        if first_bad < 0 and not weights_bad:
            return
        when = f"at iteration {int(first_bad)}" if first_bad >= 0 else "by iteration "
        when += "" if first_bad >= 0 else str(self.state.step)
        last = self._last_saved_step
        raise FloatingPointError(
            f"the training {'loss' if first_bad >= 0 else 'weights'} became non-finite {when}: "
            "nothing after it was logged, validated or saved (last checkpoint: "
            f"{'iteration ' + str(last) if last >= 0 else 'none from this run'}). Lower the "
            "learning rate (or check the data), then resume=<an earlier checkpoint> or start "
            "afresh"
        )

    def _optimizer_step(self) -> None:
        if self.trainer.grad_clip_norm:
            self.fabric.clip_gradients(
                self.model, self.optimizer, max_norm=self.trainer.grad_clip_norm
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model.module)
        self.state.step += 1
        self.state.log_steps += 1
        self.fabric.call("on_optimizer_step", runner=self)

    def _log_train_row(self, timer: StepTimer, progress: TrainProgress) -> None:
        """Mean losses since the last row, lr and timings: to the loggers, the log, the bar."""
        self._check_finite()
        state, n = self.state, self.state.log_steps
        row = {f"train/{k}": float(v) / n for k, v in state.log_sums.items()}
        if not math.isfinite(row["train/loss"]):
            raise FloatingPointError(
                f"the training loss is {row['train/loss']} at iteration {state.step}"
                " (lower the learning rate, or check the data)"
            )
        row["train/lr"] = self.optimizer.param_groups[0]["lr"]
        row["time/data_s"] = timer.data_s / n
        row["time/batch_s"] = timer.batch_s / n
        row["epoch"] = float(state.epoch)
        self._log(row)
        progress.update(state.step, {k.split("/")[-1]: v for k, v in row.items()})
        losses = " ".join(
            f"{k[6:]}={v:.4f}" for k, v in row.items() if k.startswith("train/") and k != "train/lr"
        )
        eta = datetime.timedelta(
            seconds=round((self.trainer.total_iter - state.step) * row["time/batch_s"])
        )
        log.info(
            "iteration %d/%d: %s | lr=%.3g data=%.3fs batch=%.3fs eta=%s",
            state.step,
            self.trainer.total_iter,
            losses,
            row["train/lr"],
            row["time/data_s"],
            row["time/batch_s"],
            eta,
        )
        state.log_sums, state.log_steps = {}, 0
        timer.reset()

    def _validation_due(self, epoch_ended: bool) -> bool:
        """Every N iterations / epochs, and at the last iteration (before its checkpoint: a run
        killed between the two resumes from an earlier one and logs the validation once)."""
        every_iters, every_epochs = self.trainer.eval_every_iters, self.trainer.eval_every_epochs
        if self.state.step >= self.trainer.total_iter:
            return True
        if every_iters and self.state.step % every_iters == 0:
            return True
        return bool(epoch_ended and every_epochs and self.state.epoch % every_epochs == 0)

    def _validate_and_select(self, loader: DataLoader, evaluator: LaneEvaluator) -> None:
        """Validate (EMA weights when enabled), log, keep the best checkpoint."""
        self._check_finite()
        step = self.state.step
        metrics = evaluate(
            self.fabric,
            self.eval_model,
            loader,
            evaluator,
            limit_batches=self.trainer.limit_val_batches,
            draw_dir=self.run_dir / VAL_IMAGES_DIR / f"step_{step:06d}",
            num_draw=self.trainer.num_val_images,
        )
        row = {f"val/{k}": v for k, v in metrics.items() if k != "details"}
        row["val_step"] = float(step)
        self._log(row)
        self.state.last_val_step = step
        log.info("validation at iteration %d: %s", step, format_metrics(metrics))
        if note := result_note(metrics):  # TuSimple F1 0.667 of a model predicting no lane
            log.warning("validation at iteration %d: %s", step, note)
        if metrics[evaluator.headline] > self.state.best_metric:
            self.state.best_metric = metrics[evaluator.headline]
            self.state.best_step = step
            self.save(BEST_CKPT)
        self.fabric.call("on_validation_end", runner=self, metrics=metrics)
        if self.fabric.is_global_zero:
            plot_curves(self.state.history, self.run_dir / CURVES_PNG, evaluator.headline)
        self.model.train()

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate: the EMA copy when enabled, else the trained model."""
        return self.ema.module if self.ema is not None else self.model.module

    def _log(self, row: dict[str, float]) -> None:
        self.state.history.append({"step": float(self.state.step), **row})
        self.fabric.log_dict(row, step=self.state.step)

    def _write_summary(self) -> None:
        if not self.fabric.is_global_zero:
            return
        last_val = [h for h in self.state.history if "val_step" in h]
        summary = {
            "best_metric": self.state.best_metric,
            "best_step": self.state.best_step,
            "final_step": self.state.step,
            "final_validation": last_val[-1] if last_val else None,
        }
        # A TuSimple result of a model predicting no lane (F1 0.667) says so (metrics.tusimple).
        best = [h for h in last_val if h["val_step"] == self.state.best_step]
        if best and (note := result_note(best[-1], "val/")):
            summary["best_note"] = note
        if last_val and (note := result_note(last_val[-1], "val/")):
            summary["final_validation"] = {**last_val[-1], "note": note}
        update_metrics_json(self.run_dir, summary)

    # --------------------------------------------------------------- checkpoints
    def _stateful_objects(self) -> dict[str, Any]:
        """The run's objects whose state a checkpoint holds (as their state dicts)."""
        objects: dict[str, Any] = {
            "model": self.model.module,  # plain keys, whatever the wrapping (DDP, compile)
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "precision": self.fabric.strategy.precision,  # holds the fp16 grad scaler
        }
        if self.ema is not None:
            objects["ema"] = self.ema
        return objects

    def _callback_states(self) -> dict[str, Any]:
        return {
            f"{i}:{type(cb).__name__}": cb.state_dict()
            for i, cb in enumerate(self.callbacks)
            if hasattr(cb, "state_dict")
        }

    def save(self, name: str) -> None:
        """Checkpoint the run as it is now (every rank calls; rank 0 writes)."""
        self._check_finite()
        path = checkpoint_path(self.run_dir, name)
        state = {
            **self._stateful_objects(),
            "callbacks": self._callback_states(),
            "train_state": {
                **asdict(self.state),
                "log_sums": {k: float(v) for k, v in self.state.log_sums.items()},
            },
            "rng": capture_rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }
        save_checkpoint(self.fabric, path, state)
        if name == LAST_CKPT:
            self._last_saved_step = self.state.step
        log.info("saved %s at iteration %d", path, self.state.step)
        self.fabric.call("on_checkpoint_saved", runner=self, path=path)

    def restore(self, saved: dict[str, Any], path: Path) -> None:
        """Resume exactly from a checkpoint already read: every object, the counters, the
        callbacks' state and the RNG states."""
        restore_objects(saved, self._stateful_objects())
        states = saved.get("callbacks", {})
        for i, cb in enumerate(self.callbacks):
            key = f"{i}:{type(cb).__name__}"
            if key in states and hasattr(cb, "load_state_dict"):
                cb.load_state_dict(states[key])
        self.state = TrainState(**saved["train_state"])
        if path == checkpoint_path(self.run_dir, LAST_CKPT):  # the run's last.ckpt is of this step
            self._last_saved_step = self.state.step
        restore_rng_state(saved["rng"])
        log.info(
            "resumed from %s at iteration %d (epoch %d)", path, self.state.step, self.state.epoch
        )
