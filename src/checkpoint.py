"""Everything about checkpoint files: what goes in, atomic writes, reading, restoring, which file
a run resumes from (and whether its config allows it), which weights an evaluation uses.

A training checkpoint holds every stateful object of the run (model, optimizer, scheduler,
precision plugin with the fp16 grad scaler, EMA weights, callbacks), the loop counters, the RNG
states and the resolved config: everything an exact resume needs. It is written next to its
target and renamed over it, so a crash mid-write leaves the previous checkpoint intact. Each file
is read once per run (``read_checkpoint``); the loaded dict then serves the config check, the
restore and the evaluation weights.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric

from src.config import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"
_TMP_SUFFIX = ".tmp"

# Config sections that define what is trained; a checkpoint only resumes a run that agrees on
# them (data paths and loader settings may differ).
TRAINING_SECTIONS = ("model", "dataset", "optimizer", "scheduler", "seed")
MAY_DIFFER = {"dataset.root", "dataset.num_workers", "dataset.eval_batch_size"}


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


# ------------------------------------------------------------------------------ writing
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically. Call on every rank (Fabric gathers on rank 0).

    Objects with ``state_dict()`` are saved as their state dicts (Fabric converts them)."""
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    if fabric.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    fabric.save(tmp, state)  # rank 0 writes; ends with a barrier
    if fabric.is_global_zero:
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    fabric.barrier()


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


# ------------------------------------------------------------------------------ reading
def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The file's contents, on the CPU, without unpickling anything but tensors and plain
    values (weights_only): the one read of this file in this run."""
    return torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True)


def restore_objects(saved: Mapping[str, Any], state: dict[str, Any]) -> None:
    """Load ``saved`` into ``state`` in place: objects with ``load_state_dict`` get their saved
    state; plain entries are replaced by the saved values. Keys missing from ``saved`` are left
    as they are (e.g. no EMA in a checkpoint of a run without it)."""
    for key, obj in state.items():
        if key not in saved:
            continue
        if hasattr(obj, "load_state_dict"):
            obj.load_state_dict(saved[key])
        else:
            state[key] = saved[key]


def evaluation_weights(saved: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """The weights an evaluation of ``path`` uses: the EMA copy of a run trained with EMA (those
    were validated and selected), else the file as it is (project or reference layout)."""
    ema = saved.get("ema")
    if isinstance(ema, Mapping):
        log.info("%s holds EMA weights: evaluating those", path)
        return {k.removeprefix("module."): v for k, v in ema.items() if k != "n_averaged"}
    return saved


# ------------------------------------------------------------------------- resume choice
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


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys of the training-defining sections whose values differ, as ``key: saved -> now``."""
    old = _flatten({k: saved.get(k) for k in TRAINING_SECTIONS})
    new = _flatten({k: current.get(k) for k in TRAINING_SECTIONS})
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if key not in MAY_DIFFER and old.get(key) != new.get(key)
    ]


def check_resume_config(path: Path, saved: Mapping[str, Any], config: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint trained with a different model, data, optimizer, schedule
    or seed: the result would mix two runs."""
    differences = config_differences(saved["config"], config)
    if differences:
        raise ConfigError(
            f"{path} was trained with a different config, so resuming it would mix two runs "
            "(use another run_name, or resume=never in a new run dir):\n  "
            + "\n  ".join(differences)
        )


def eval_checkpoint_path(run_dir: Path, load_from: str | None, which: str, mode: str) -> Path:
    """validate / test / predict: ``load_from``, else this run's best (or last) checkpoint."""
    if load_from:
        return Path(load_from)
    path = checkpoint_dir(run_dir) / (BEST if which == "best" else LAST)
    if not path.is_file():
        raise ConfigError(
            f"mode={mode} needs weights: load_from=<checkpoint> (this project's or a "
            f"reference SRLane file), or run_name=<a trained run> with {path.name} in "
            f"{path.parent}"
        )
    return path
