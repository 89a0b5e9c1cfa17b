"""Helpers for tests that compose the config or run the launcher: the one compose helper, and the
overrides that make a run on the tiny synthetic dataset take seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from src.config import register_configs

ROOT = Path(__file__).resolve().parents[1]

register_configs()


def compose_cfg(*overrides: str, hydra_config: bool = False) -> DictConfig:
    """The config ``python -m src.main <overrides>`` would run, composed with Hydra's API
    (``hydra_config``: with the ``hydra`` node, e.g. the run dir)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra_config)


# 640x360 frames (TuSimple format, h_samples scaled), cut at 80, 320x128 input, batch 2.
TINY_DATA = [
    "dataset.synthetic.num_train=12",
    "dataset.synthetic.num_val=6",
    "dataset.synthetic.num_test=4",
    "dataset.synthetic.width=640",
    "dataset.synthetic.height=360",
    "dataset.cut_height=80",
    "dataset.batch_size=2",
    "dataset.eval_batch_size=3",
    "dataset.num_workers=0",
]


def tiny_run(root: Path, total_iter: int = 6) -> list[str]:
    """Overrides for a CPU run of ``total_iter`` iterations on the tiny dataset in ``root``."""
    return [
        f"dataset.root={root}",
        *TINY_DATA,
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",  # the exactness tests compare fp32 runs
        f"trainer.total_iter={total_iter}",
        "trainer.eval_every_epochs=0",
        "trainer.eval_every_iters=0",
        "trainer.checkpoint_every_iters=2",
        "trainer.log_every_iters=1",
        "trainer.num_val_images=1",
        "trainer.progress=false",
        "scheduler.warmup_iters=2",
    ]


def run_main(
    args: list[str],
    cwd: Path = ROOT,
    timeout: float = 600,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m src.main <args>`` in a subprocess, one CPU thread per process; ``env`` adds
    variables."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "src.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"exit {result.returncode}\nstdout:\n{result.stdout[-4000:]}\n"
            f"stderr:\n{result.stderr[-4000:]}"
        )
    return result
