"""The train / validate / test / predict loops, on Lightning Fabric.

``Runner.fit`` is the whole training loop, readable top to bottom: iteration-based training to
``trainer.total_iter`` (one iteration = one optimizer step over ``accumulate_grad_batches``
micro-batches), validation every N epochs and/or N iterations and at the end, last/best
checkpoints, metric logging. The pieces it uses have small interfaces: the evaluator
(src/evaluation.py), checkpoint files (src/checkpoint.py), loggers (src/loggers.py).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from src.checkpoint import (
    BEST,
    LAST,
    capture_rng_state,
    checkpoint_dir,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from src.data import EpochSampler
from src.evaluation import LaneEvaluator
from src.preemption import PreemptionWatch
from src.progress import TrainProgress
from src.visualize import draw_lanes, plot_curves

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
CURVES_PNG = "curves.png"
LOSS_PARTS = ("angle_loss", "cls_loss", "l1_loss", "iou_loss")
LOSS_KEYS = ("loss", *LOSS_PARTS)


@dataclass
class TrainState:
    """Counters saved in every checkpoint; with the RNG states they make resume exact."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of `epoch` already consumed by this rank
    best_metric: float = -math.inf
    best_step: int = -1
    last_val_step: int = -1
    # Loss sums since the last logged row (tensors while training, floats in checkpoints), so
    # that a run resumed between two log steps logs the same rows as an uninterrupted one.
    log_sums: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(LOSS_KEYS, 0.0))
    log_steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # logged rows, for curves


class Runner:
    def __init__(
        self,
        cfg: DictConfig,
        fabric: Fabric,
        run_dir: Path,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        ema: AveragedModel | None = None,
        preemption: PreemptionWatch | None = None,
    ) -> None:
        self.cfg = cfg
        self.fabric = fabric
        self.run_dir = run_dir
        self.model = model  # Fabric-wrapped
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema = ema
        self.preemption = preemption
        self.state = TrainState()

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train_loader: DataLoader,
        train_sampler: EpochSampler,
        val_loader: DataLoader,
        make_evaluator: Callable[[], LaneEvaluator],
    ) -> float:
        """Train to total_iter; returns the best validation metric (the sweepers' objective)."""
        cfg, fabric, state = self.cfg.trainer, self.fabric, self.state
        model, optimizer, scheduler = self.model, self.optimizer, self.scheduler
        assert optimizer is not None and scheduler is not None
        accumulate = cfg.accumulate_grad_batches
        micro_batch = train_loader.batch_size
        # Whole micro-batches of a full epoch on this rank, cut to a multiple of `accumulate`.
        batches_per_epoch = train_sampler.epoch_size // micro_batch // accumulate * accumulate
        if batches_per_epoch == 0:
            raise ValueError(
                f"the training split gives {train_sampler.epoch_size // micro_batch} batches "
                f"per process, fewer than accumulate_grad_batches={accumulate}: lower the "
                "batch size"
            )
        progress = TrainProgress(cfg.total_iter, state.step, fabric.is_global_zero and cfg.progress)
        log.info(
            "training from iteration %d to %d (%d iterations per epoch)",
            state.step,
            cfg.total_iter,
            batches_per_epoch // accumulate,
        )
        model.train()
        sums = state.log_sums
        data_time, batch_time = 0.0, 0.0
        tick = time.perf_counter()
        while state.step < cfg.total_iter:
            train_sampler.seek(state.epoch, skip=state.batch_in_epoch * micro_batch)
            optimizer.zero_grad(set_to_none=True)
            for batch in train_loader:
                data_time += time.perf_counter() - tick
                state.batch_in_epoch += 1
                is_accumulating = state.batch_in_epoch % accumulate != 0
                with fabric.no_backward_sync(model, enabled=is_accumulating):
                    out = model(batch["img"], gt_lane=batch["gt_lane"], gt_angle=batch["gt_angle"])
                    fabric.backward(out["loss"] / accumulate)
                for k in sums:  # tensors: no device sync until the row is logged
                    sums[k] = sums[k] + out[k].detach() / accumulate
                if is_accumulating:
                    tick = time.perf_counter()
                    continue
                if cfg.grad_clip_norm:
                    fabric.clip_gradients(model, optimizer, max_norm=cfg.grad_clip_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(model.module)
                state.step += 1
                state.log_steps += 1
                now = time.perf_counter()
                batch_time += now - tick
                tick = now

                if state.step % cfg.log_every_iters == 0 or state.step == cfg.total_iter:
                    n = state.log_steps
                    row = {f"train/{k}": float(v) / n for k, v in sums.items()}
                    if not math.isfinite(row["train/loss"]):
                        raise FloatingPointError(
                            f"the training loss is {row['train/loss']} at iteration {state.step}"
                            " (lower the learning rate, or check the data)"
                        )
                    row["train/lr"] = optimizer.param_groups[0]["lr"]
                    row["time/data_s"] = data_time / n
                    row["time/batch_s"] = batch_time / n
                    row["epoch"] = float(state.epoch)
                    self._log(row)
                    progress.update(state.step, {k.split("/")[-1]: v for k, v in row.items()})
                    eta_s = (cfg.total_iter - state.step) * row["time/batch_s"]
                    log.info(
                        "iteration %d/%d: %s | lr=%.3g data=%.3fs batch=%.3fs eta=%s",
                        state.step,
                        cfg.total_iter,
                        " ".join(
                            f"{k[6:]}={row[k]:.4f}"
                            for k in row
                            if k.startswith("train/") and k != "train/lr"
                        ),
                        row["train/lr"],
                        row["time/data_s"],
                        row["time/batch_s"],
                        datetime.timedelta(seconds=round(eta_s)),
                    )
                    sums = state.log_sums = dict.fromkeys(LOSS_KEYS, 0.0)
                    state.log_steps, data_time, batch_time = 0, 0.0, 0.0
                if state.step % cfg.checkpoint_every_iters == 0:
                    self.save(LAST)
                if cfg.eval_every_iters and state.step % cfg.eval_every_iters == 0:
                    self._validate_and_select(val_loader, make_evaluator())
                    tick = time.perf_counter()
                if self.preemption is not None and self.preemption.should_stop(fabric):
                    self.save(LAST)
                    progress.stop()
                    self.preemption.hand_over()  # rank 0: requeued by submitit, exits here
                    return state.best_metric
                if state.step >= cfg.total_iter or state.batch_in_epoch >= batches_per_epoch:
                    break
            if state.batch_in_epoch >= batches_per_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
                if cfg.eval_every_epochs and state.epoch % cfg.eval_every_epochs == 0:
                    self._validate_and_select(val_loader, make_evaluator())
                    tick = time.perf_counter()
        progress.stop()

        if state.last_val_step != state.step:
            self._validate_and_select(val_loader, make_evaluator())
        self.save(LAST)
        self._write_summary()
        return state.best_metric

    def _validate_and_select(self, loader: DataLoader, evaluator: LaneEvaluator) -> None:
        """Validate (EMA weights when enabled), log, keep the best checkpoint."""
        step = self.state.step
        draw_dir = self.run_dir / "val_images" / f"step_{step:06d}"
        metrics = self.evaluate(loader, evaluator, draw_dir=draw_dir, model=self.eval_model)
        headline = metrics[evaluator.headline]
        row = {f"val/{k}": v for k, v in metrics.items() if k != "details"}
        row["val_step"] = float(step)
        self._log(row)
        self.state.last_val_step = step
        log.info("validation at iteration %d: %s", step, _format(metrics))
        if headline > self.state.best_metric:
            self.state.best_metric = headline
            self.state.best_step = step
            self.save(BEST)
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
        _update_metrics_json(self.run_dir / METRICS_JSON, summary)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(
        self,
        loader: DataLoader,
        evaluator: LaneEvaluator,
        draw_dir: Path | None = None,
        model: nn.Module | None = None,
    ) -> dict[str, Any]:
        """One pass over a split on every rank (disjoint shards); the metric is summed across
        ranks. Runs the plain module, not the DDP wrapper, so ranks need not step together."""
        model = model if model is not None else self.model.module
        model.eval()
        limit = self.cfg.trainer.limit_val_batches
        to_draw = self.cfg.trainer.num_val_images if self.fabric.is_global_zero else 0
        for index, batch in enumerate(loader):
            if limit and index >= limit:
                break
            start = time.perf_counter()
            lanes = self._detect(model, batch)
            metas = batch["meta"]
            per_image_ms = (time.perf_counter() - start) * 1000.0 / len(metas)
            evaluator.update(lanes, metas, [per_image_ms] * len(metas))
            if draw_dir is not None and to_draw > 0:
                to_draw -= _draw_samples(draw_dir, lanes, metas, to_draw)
        evaluator.write_rank_part()
        if evaluator.skipped:
            log.warning("%d unreadable image(s) were not scored", evaluator.skipped)
        metrics = evaluator.compute()
        self.fabric.barrier()
        if self.fabric.is_global_zero:
            evaluator.merge_rank_parts()
        return metrics

    def _detect(self, model: nn.Module, batch: dict[str, Any]) -> list[list[Any]]:
        """Forward (under the run's precision) and decode to lanes in original-image space."""
        with self.fabric.autocast():
            predictions = model(batch["img"])
        metas = batch["meta"]
        return model.decode(
            predictions.float(), [m["cut_height"] for m in metas], [m["ori_size"][0] for m in metas]
        )

    def test(self, loader: DataLoader, evaluator: LaneEvaluator, name: str) -> dict[str, Any]:
        """Score a split with the loaded weights and write metrics.json (+ prediction files)."""
        metrics = self.evaluate(loader, evaluator, draw_dir=self.run_dir / f"{name}_images")
        log.info("%s: %s", name, _format(metrics))
        if self.fabric.is_global_zero:
            _update_metrics_json(self.run_dir / METRICS_JSON, {name: metrics})
        return metrics

    @torch.no_grad()
    def predict(self, loader: DataLoader, out_dir: Path, draw: bool) -> Path:
        """Lanes for arbitrary images: JSON Lines (pixels of the original image) + drawings."""
        model = self.model.module
        model.eval()
        out_dir.mkdir(parents=True, exist_ok=True)
        part = out_dir / f".predictions.rank{self.fabric.global_rank}"
        with open(part, "w") as f:
            for batch in loader:
                lanes = self._detect(model, batch)
                for image_lanes, meta in zip(lanes, batch["meta"], strict=True):
                    ori_h, ori_w = meta["ori_size"]
                    pixels = [lane.to_pixels(ori_w, ori_h) for lane in image_lanes]
                    record = {
                        "image": meta["img_path"],
                        "lanes": [p.round(2).tolist() for p in pixels],
                        "scores": [round(float(lane.score or 0.0), 4) for lane in image_lanes],
                    }
                    f.write(f"{meta['index']}\t{json.dumps(record)}\n")
                    if draw:
                        image = cv2.imread(meta["img_path"], cv2.IMREAD_COLOR)
                        name = meta["img_name"].replace("/", "_")
                        cv2.imwrite(str(out_dir / name), draw_lanes(image, pixels))
        self.fabric.barrier()
        out = out_dir / "predictions.jsonl"
        if self.fabric.is_global_zero:
            rows = []
            for p in sorted(out_dir.glob(".predictions.rank*")):
                rows += [r.split("\t", 1) for r in p.read_text().splitlines()]
                p.unlink()
            out.write_text(
                "".join(line + "\n" for _, line in sorted(rows, key=lambda r: int(r[0])))
            )
            log.info("predictions for %d images written to %s", len(rows), out)
        return out

    # --------------------------------------------------------------- checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "model": self.model,
            "precision": self.fabric.strategy.precision,  # holds the fp16 grad scaler
            "train_state": {
                **asdict(self.state),
                "log_sums": {k: float(v) for k, v in self.state.log_sums.items()},
            },
            "rng": capture_rng_state(),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer
            state["scheduler"] = self.scheduler
        if self.ema is not None:
            state["ema"] = self.ema
        return state

    def save(self, name: str) -> None:
        path = checkpoint_dir(self.run_dir) / name
        save_checkpoint(self.fabric, path, self._checkpoint_state())
        log.info("saved %s at iteration %d", path, self.state.step)

    def restore(self, path: Path) -> None:
        """Resume exactly: every object, the counters and the RNG states."""
        state = self._checkpoint_state()
        load_checkpoint(self.fabric, path, state)
        self.state = TrainState(**state["train_state"])
        restore_rng_state(state["rng"])
        log.info(
            "resumed from %s at iteration %d (epoch %d)", path, self.state.step, self.state.epoch
        )


def _draw_samples(
    draw_dir: Path, lanes: Sequence[Sequence[Any]], metas: Sequence[dict[str, Any]], limit: int
) -> int:
    """Save up to ``limit`` images with predicted (red) and true (green) lanes; returns count."""
    draw_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    for image_lanes, meta in zip(lanes, metas, strict=True):
        if count >= limit:
            break
        image = cv2.imread(meta["img_path"], cv2.IMREAD_COLOR)
        if image is None:
            continue
        ori_h, ori_w = meta["ori_size"]
        pred = [lane.to_pixels(ori_w, ori_h) for lane in image_lanes]
        name = meta["img_name"].replace("/", "_")
        cv2.imwrite(str(draw_dir / name), draw_lanes(image, pred, meta["lanes"]))
        count += 1
    return count


def _update_metrics_json(path: Path, entries: dict[str, Any]) -> None:
    """Merge ``entries`` into the run's metrics.json (training summary, validate, test results
    live side by side), written atomically."""
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(entries)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    tmp.replace(path)
    log.info("metrics written to %s", path)


def _format(metrics: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
