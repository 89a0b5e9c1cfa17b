"""Everything about checkpoint files: what goes in, atomic writes, reading, restoring, which file
a run resumes from (and whether its config allows it), which weights an evaluation uses.

A training checkpoint holds every stateful object of the run (model, optimizer, scheduler,
precision plugin with the fp16 grad scaler, EMA weights, callbacks), the loop counters, the RNG
states and the resolved config: everything an exact resume needs, plus a digest of all of it.
It is written to a temporary file next to its target (never in $TMPDIR: a small /tmp must not
fail a save) and renamed over it, so a crash mid-write leaves the previous checkpoint intact; a
failed write removes its partial file. Each file is read once per run (``read_checkpoint``),
which verifies the digest; the loaded dict then serves the config check, the restore and the
evaluation weights.
"""

from __future__ import annotations

import hashlib
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
DIGEST = "payload_sha256"  # the digest entry of every checkpoint this project writes

# Config sections that define what is trained; a checkpoint only resumes a run that agrees on
# them (data paths and loader settings may differ).
TRAINING_SECTIONS = ("model", "dataset", "optimizer", "scheduler", "seed")
MAY_DIFFER = {
    "dataset.root",
    "dataset.num_workers",
    "dataset.eval_batch_size",
    "dataset.decoded_cache",  # the same inputs either way
    # Worker or device augmentation differ by rounding only (tests/data/test_device_augment.py),
    # and auto resolves by the machine: a run may resume on another kind of machine.
    "dataset.augment_on",
}


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


# ------------------------------------------------------------------------------ writing
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file and what to do."""


def payload_digest(state: Mapping[str, Any]) -> str:
    """sha256 over every entry of a checkpoint (tensor bytes, dtypes, shapes and plain values, by
    key path), the same before saving and after loading."""
    digest = hashlib.sha256()

    def add(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for k in sorted(node, key=str):
                add(node[k], f"{key}/{k}")
        elif isinstance(node, (list, tuple)):
            digest.update(f"{key}:{type(node).__name__}{len(node)};".encode())
            for i, item in enumerate(node):
                add(item, f"{key}/{i}")
        elif isinstance(node, torch.Tensor):
            flat = node.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{key}:{flat.dtype}{tuple(node.shape)};".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        else:
            digest.update(f"{key}={node!r};".encode())

    add(state, "")
    return digest.hexdigest()


def save_checkpoint(fabric: Fabric, path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically with its digest. Call on every rank: objects with
    ``state_dict()`` are saved as their state dicts (the same on every rank: the model and the
    optimizer are replicated), rank 0 writes."""
    if fabric.is_global_zero:
        plain = {k: v.state_dict() if hasattr(v, "state_dict") else v for k, v in state.items()}
        plain[DIGEST] = payload_digest(plain)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + _TMP_SUFFIX)
        try:
            with open(tmp, "wb") as f:
                torch.save(plain, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync(path.parent)
        except OSError as err:
            tmp.unlink(missing_ok=True)  # a partial file would keep the disk full
            raise CheckpointError(
                f"writing the checkpoint {path} failed: {err}. The previous {path.name} (if any) "
                f"is intact; free space in {path.parent} and rerun the same command to resume"
            ) from err
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
_WHAT_TO_DO = (
    "resume from another checkpoint (resume=<path>, e.g. a best.ckpt or iter_*.ckpt of the run), "
    "or start afresh (another run_name, or delete the run's checkpoints)"
)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The file's contents, on the CPU, without unpickling anything but tensors and plain
    values (weights_only): the one read of this file in this run. A file of this project is
    checked against its digest; files from elsewhere (reference weights) have none."""
    path = Path(path).expanduser()
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, random bytes, empty, not a torch file, hostile pickle
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        size = path.stat().st_size if path.is_file() else 0
        raise CheckpointError(
            f"{path} ({size} bytes) cannot be read as a checkpoint ({reason}); {_WHAT_TO_DO}"
        ) from None
    if not isinstance(saved, dict):
        raise CheckpointError(
            f"{path} holds a {type(saved).__name__}, not a checkpoint dict; {_WHAT_TO_DO}"
        )
    digest = saved.pop(DIGEST, None)
    if digest is not None and payload_digest(saved) != digest:
        raise CheckpointError(
            f"{path} is corrupt: its contents do not match the digest written with it (a "
            f"changed or damaged byte); {_WHAT_TO_DO}"
        )
    return saved


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
