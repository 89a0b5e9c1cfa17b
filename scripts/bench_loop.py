"""Runner overhead and start-up time.

1. Time per training iteration of ``Runner.fit`` (Fabric, data loader, logging, checkpoint
   bookkeeping) against a bare torch loop (forward, backward, AdamW step, scheduler step) on the
   same model and the same batch. Every iteration is timed, from one optimizer step to the next,
   in both loops; they run in this process, interleaved in rounds so that machine noise hits
   both alike. The median (robust to a noisy 2-core machine) and the mean per-iteration times
   and their ratios are printed. Goal: overhead <= 3%.
2. Time from launching ``python -m src.main`` to the end of its first training iteration
   (imports, config, dataset, model, Fabric), read from the run's log lines as they stream.

    python scripts/bench_loop.py [--iters 40] [--rounds 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.fabric import Fabric
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from src.config import Config
from src.data import EpochSampler, collate_lanes
from src.engine.optim import warmup_cosine
from src.engine.runner import Runner
from src.inference.evaluate import LaneEvaluator
from src.models.srlane import SRLane, lane_targets

ROOT = Path(__file__).resolve().parents[1]
IMG_W, IMG_H, MAX_LANES = 320, 128, 5


class RepeatedSample(Dataset):
    """One fixed training sample, repeated: the runner's data path without decoding cost."""

    def __init__(self, size: int) -> None:
        torch.manual_seed(0)
        lanes = [
            [(60 + 60 * i + 0.3 * (IMG_H - y), y) for y in range(IMG_H, 20, -8)] for i in range(4)
        ]
        gt_lane, gt_angle = lane_targets(lanes, IMG_W, IMG_H, 72, MAX_LANES)
        self.item = {
            "img": torch.rand(3, IMG_H, IMG_W),
            "gt_lane": torch.from_numpy(gt_lane),
            "gt_angle": [torch.from_numpy(a) for a in gt_angle],
            # What the TuSimple-format evaluator reads (validation of the fixed sample).
            "meta": {
                "index": 0,
                "img_path": "",
                "img_name": "clips/x/20.jpg",
                "ori_size": (720, 1280),
                "cut_height": 160,
                "h_samples": list(range(160, 720, 10)),
                "gt_xs": [[-2] * 56],
                "lanes": [],
            },
        }
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: object) -> dict:
        return self.item


def new_model() -> SRLane:
    torch.manual_seed(0)
    return SRLane(img_w=IMG_W, img_h=IMG_H, max_lanes=MAX_LANES, nms_thres=20.0)


def step_times(stamps: list[float], skip: int = 2) -> list[float]:
    """Seconds between consecutive optimizer steps, without the first ``skip`` (warm-up)."""
    return [b - a for a, b in zip(stamps[skip:], stamps[skip + 1 :], strict=False)]


def bare_loop(model: SRLane, batch: dict, iters: int) -> list[float]:
    """Per-iteration seconds of the plainest correct training loop."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    scheduler = warmup_cosine(optimizer, warmup_iters=1, total_iters=10**6)
    model.train()
    stamps = [time.perf_counter()]
    for _ in range(iters):
        out = model(batch["img"], gt_lane=batch["gt_lane"], gt_angle=batch["gt_angle"])
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        stamps.append(time.perf_counter())
    return step_times(stamps)


def runner_loop(
    model: SRLane, dataset: Dataset, batch_size: int, iters: int, run_dir: Path
) -> list[float]:
    """Per-iteration seconds of Runner.fit (the default logging interval, a 1-batch validation
    and the checkpoint at the end, which fall outside the timed iterations)."""
    cfg = OmegaConf.structured(Config)
    cfg.dataset.name = "synthetic"
    cfg.trainer.total_iter = iters
    cfg.trainer.eval_every_epochs = 0
    cfg.trainer.num_val_images = 0
    cfg.trainer.progress = False
    fabric = Fabric(accelerator="cpu", devices=1, precision="32-true", loggers=[])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    scheduler = warmup_cosine(optimizer, warmup_iters=1, total_iters=10**6)
    fmodel, foptimizer = fabric.setup(model, optimizer)
    stamps = [time.perf_counter()]
    step = foptimizer.step

    def timed_step(*args: object, **kwargs: object) -> object:  # the runner calls this once
        result = step(*args, **kwargs)  # per iteration: time from one call to the next
        stamps.append(time.perf_counter())
        return result

    foptimizer.step = timed_step
    train_sampler = EpochSampler(len(dataset), shuffle=True, seed=0)
    val_sampler = EpochSampler(batch_size, shuffle=False)

    def loader(sampler: EpochSampler) -> DataLoader:
        plain = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate_lanes,
            drop_last=True,
        )
        return fabric.setup_dataloaders(plain, use_distributed_sampler=False)

    def evaluator() -> LaneEvaluator:
        return LaneEvaluator("synthetic", cfg.evaluation)

    runner = Runner(cfg, fabric, run_dir, fmodel, foptimizer, scheduler)
    runner.fit(loader(train_sampler), train_sampler, loader(val_sampler), evaluator)
    return step_times(stamps)


def time_to_first_step(extra: list[str]) -> tuple[float, float]:
    """(seconds to the first iteration's log line, seconds to process exit) of the launcher."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "src.main",
            "debug=default",
            "trainer.total_iter=1",
            "trainer.limit_val_batches=1",
            "trainer.num_val_images=0",
            f"hydra.run.dir={tmp}/run",
            *extra,
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        first = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if first is None and "iteration 1:" in line:
                first = time.perf_counter() - start
        proc.wait()
        if proc.returncode != 0 or first is None:
            raise RuntimeError(f"launcher failed (exit {proc.returncode})")
        return first, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=40, help="iterations per round and loop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--skip-startup", action="store_true")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"SRLane-R18 {IMG_W}x{IMG_H}, batch {args.batch}, {args.iters} iterations x "
        f"{args.rounds} rounds"
    )

    dataset = RepeatedSample(args.batch * (args.iters + 1))
    batch = collate_lanes([dataset[0]] * args.batch)
    base = new_model()
    # Warm-up (allocator, oneDNN kernels) outside the timed rounds.
    bare_loop(copy.deepcopy(base), batch, 2)
    bare: list[float] = []
    runner: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            b = bare_loop(copy.deepcopy(base), batch, args.iters)
            rn = runner_loop(copy.deepcopy(base), dataset, args.batch, args.iters, Path(tmp) / "r")
            bare += b
            runner += rn
            print(
                f"round {r}: median bare {statistics.median(b) * 1e3:.1f} ms/it, "
                f"runner {statistics.median(rn) * 1e3:.1f} ms/it"
            )
    for name, stat in (("median", statistics.median), ("mean", statistics.fmean)):
        b, rn = stat(bare), stat(runner)
        print(
            f"{name:6s} of {len(bare)} iterations: bare torch loop {b * 1e3:.1f} ms, "
            f"Runner.fit {rn * 1e3:.1f} ms, runner overhead {(rn / b - 1) * 100:+.2f}% "
            "(goal: <= 3%)"
        )

    if not args.skip_startup:
        first, total = time_to_first_step([])
        print(
            f"python -m src.main debug=default: first iteration done {first:.1f} s after launch "
            f"(process finished after {total:.1f} s, incl. a 1-batch validation)"
        )


if __name__ == "__main__":
    main()
