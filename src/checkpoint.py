"""Training checkpoints: atomic writes, RNG state capture, and finding what to resume from.

A checkpoint holds everything an exact resume needs (model, optimizer, scheduler, precision
plugin / grad scaler, optional EMA weights, counters, best metric, RNG states) plus the resolved
config. It is written with Fabric to a temporary file in the same directory and renamed over the
old one, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"
_TMP_SUFFIX = ".tmp"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically. Call on every rank (Fabric gathers on rank 0)."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    if fabric.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    fabric.save(tmp, state)  # rank 0 writes; ends with a barrier
    if fabric.is_global_zero:
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    fabric.barrier()


def load_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """Restore the objects in ``state`` in place from ``path``; return the remaining entries."""
    return fabric.load(path, state, weights_only=True)


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch (CPU and CUDA) as weights_only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    gauss = python[-1]
    random.setstate((state["python_version"], tuple(python[:-1]), gauss))
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# Config sections that define what is trained; a checkpoint only resumes a run that agrees on
# them (data paths and loader settings may differ).
TRAINING_SECTIONS = ("model", "dataset", "optimizer", "scheduler", "seed")
MAY_DIFFER = {"dataset.root", "dataset.num_workers", "dataset.eval_batch_size"}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the training-defining sections whose values differ, as ``key: saved -> now``."""

    def flat(node: Any, prefix: str) -> dict[str, Any]:
        if isinstance(node, dict):
            out: dict[str, Any] = {}
            for key, value in node.items():
                out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
            return out
        return {prefix: node}

    old = flat({k: saved.get(k) for k in TRAINING_SECTIONS}, "")
    new = flat({k: current.get(k) for k in TRAINING_SECTIONS}, "")
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if key not in MAY_DIFFER and old.get(key) != new.get(key)
    ]


def resume_path(run_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint to resume from, or None to start fresh.

    resume=auto: <run dir>/checkpoints/last.ckpt when it exists. resume=never: None, but a run
    dir that already holds a last checkpoint is refused (nothing is silently overwritten).
    Otherwise ``resume`` is a checkpoint path, which must exist.
    """
    last = checkpoint_dir(run_dir) / LAST
    if resume == "auto":
        return last if last.is_file() else None
    if resume == "never":
        if last.is_file():
            raise FileExistsError(
                f"{last} exists and resume=never: choose another run_name, delete the run "
                "directory, or resume=auto to continue it"
            )
        return None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint file")
    return path
