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

import dataclasses
import hashlib
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError
from src.run_dir import (
    BEST_CKPT,
    CHECKPOINT_DIR,
    CURVES_PNG,
    LAST_CKPT,
    METRICS_JSON,
    checkpoint_path,
    write_atomic,
)

log = logging.getLogger(__name__)

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
# Code that moved since a checkpoint was written: its old ``_target_`` -> the current one.
MOVED_TARGETS = {
    "src.optim.warmup_cosine": "src.engine.optim.warmup_cosine",
    "src.optim.warmup_multistep": "src.engine.optim.warmup_multistep",
}


# ------------------------------------------------------------------------------ writing
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
        previous = path.is_file()
        try:
            write_atomic(path, lambda out: torch.save(plain, out), fsync=True)
        except Exception as err:  # torch's zip writer reports a full disk as a RuntimeError
            kept = (
                f"the previous {path.name} is intact"
                if previous
                else f"no earlier {path.name} exists, so nothing is lost but this one"
            )
            raise CheckpointError(
                f"writing the checkpoint {path} failed ({type(err).__name__}: "
                f"{_first_line(err)}); {kept}. Free space in {path.parent} (a full disk?) or "
                "make it writable, then rerun the same command to resume"
            ) from err
    fabric.barrier()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"


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
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file; {_WHAT_TO_DO}")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; {_WHAT_TO_DO}")
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
    Otherwise ``resume`` is a checkpoint path, which must exist. Checkpoint paths the run could
    not write are refused here, before any work (``check_checkpoint_targets``).
    """
    check_checkpoint_targets(run_dir)
    last = checkpoint_path(run_dir, LAST_CKPT)
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
    if path.is_dir():
        raise CheckpointError(f"resume={resume} is a directory: expected a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint file")
    return path


def check_checkpoint_targets(run_dir: str | Path) -> None:
    """Refuse a run dir whose checkpoints/, last.ckpt or best.ckpt the run could not write or
    would misread (found at the first save otherwise, after training up to it): a checkpoints
    path that is not a directory, a last/best that is a directory or a broken link; likewise
    the files a training run writes only after its first validation (metrics.json,
    curves.png) when they are directories."""
    for name in (METRICS_JSON, CURVES_PNG):
        if (Path(run_dir) / name).is_dir():
            raise CheckpointError(
                f"{Path(run_dir) / name} is a directory, but the run writes its {name} there "
                "after training: move it away, or use another run_name"
            )
    folder = Path(run_dir) / CHECKPOINT_DIR
    if os.path.lexists(folder) and not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a directory, but the run keeps its checkpoints there: move it "
            "away, or use another run_name"
        )
    for name in (LAST_CKPT, BEST_CKPT):
        path = checkpoint_path(run_dir, name)
        if path.is_dir():
            raise CheckpointError(
                f"{path} is a directory, not a checkpoint file: a run cannot resume from it or "
                "save over it. Move it away (resume=<a checkpoint file> to continue from "
                "another one), or use another run_name"
            )
        if os.path.lexists(path) and not path.exists():
            raise CheckpointError(
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: "
                "restore the file it points to, or remove the link to start afresh"
            )


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _schema_default(cfg: DictConfig, key: str) -> Any:
    """The schema default of ``key`` (``a.b.c``) in the current config, or None when the key's
    node has no dataclass schema or the field no default."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if not dataclasses.is_dataclass(schema):
        return None
    for spec in dataclasses.fields(schema):
        if spec.name == name:
            if spec.default_factory is not dataclasses.MISSING:
                return spec.default_factory()
            return None if spec.default is dataclasses.MISSING else spec.default
    return None


def config_differences(saved: dict[str, Any], cfg: DictConfig) -> list[str]:
    """Keys of the training-defining sections whose values differ, as ``key: saved -> now``.

    Written by an older version of this tool, a checkpoint's config may name moved code by its
    old path (``MOVED_TARGETS``) and lack keys added since: those compare as their default, so
    upgrading the tool does not strand a run, while a value that really differs is refused."""
    current = OmegaConf.to_container(cfg, resolve=True)
    old = _flatten({k: saved.get(k) for k in TRAINING_SECTIONS})
    old = {k: MOVED_TARGETS.get(v, v) if k.endswith("_target_") else v for k, v in old.items()}
    new = _flatten({k: current.get(k) for k in TRAINING_SECTIONS})
    for key in new.keys() - old.keys():
        old[key] = _schema_default(cfg, key)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if key not in MAY_DIFFER and old.get(key) != new.get(key)
    ]


# What every training checkpoint of this project holds (Runner.save), beyond the weights.
TRAINING_ENTRIES = {"model": Mapping, "train_state": Mapping, "rng": Mapping, "config": Mapping}


def check_training_checkpoint(path: Path, saved: Mapping[str, Any]) -> None:
    """Refuse to resume a file that is not a training checkpoint of this project (e.g. a bare
    state dict, or reference weights): it has no counters, RNG states or config to resume."""
    wrong = [key for key, kind in TRAINING_ENTRIES.items() if not isinstance(saved.get(key), kind)]
    if not wrong:
        return
    tensors = sum(isinstance(v, torch.Tensor) for v in saved.values())
    looks = (
        f"a bare state dict of {tensors} tensors (model weights only)"
        if tensors and tensors == len(saved)
        else f"a dict with keys {', '.join(sorted(map(str, saved))[:6]) or '(none)'}"
    )
    raise CheckpointError(
        f"{path} is not a training checkpoint of this project: it holds {looks}, without "
        f"{', '.join(wrong)}. To start a new run from its weights use load_from={path} with "
        "another run_name (or move the file out of checkpoints/); to continue a run, "
        "resume=<a last.ckpt, best.ckpt or iter_*.ckpt this project wrote>"
    )


def check_resume_config(path: Path, saved: Mapping[str, Any], cfg: DictConfig) -> None:
    """Refuse to resume a file that is not a training checkpoint, or a checkpoint trained with
    a different model, data, optimizer, schedule or seed: the result would mix two runs."""
    check_training_checkpoint(path, saved)
    differences = config_differences(saved["config"], cfg)
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
    path = checkpoint_path(run_dir, BEST_CKPT if which == "best" else LAST_CKPT)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file; {_WHAT_TO_DO}")
    if not path.is_file():
        raise ConfigError(
            f"mode={mode} needs weights: load_from=<checkpoint> (this project's or a "
            f"released reference file), or run_name=<a trained run> with {path.name} in "
            f"{path.parent}"
        )
    return path


# ------------------------------------------------------------------------ the run's start
@dataclass
class Start:
    """The checkpoint a run starts from, read once: a training checkpoint to resume, or the
    weights an evaluation uses (none: a fresh training, or predict with the ONNX export)."""

    path: Path | None = None
    saved: dict[str, Any] = field(default_factory=dict)


def read_start(cfg: DictConfig, run_dir: Path) -> Start:
    """Train: the checkpoint to resume (its config must match). Evaluate and export: load_from or
    this run's best/last checkpoint. Predict with ONNX Runtime: nothing (the export holds the
    weights)."""
    if cfg.mode == "train":
        path = resume_path(run_dir, cfg.resume)
        if path is None:
            return Start()
        saved = read_checkpoint(path)
        check_resume_config(path, saved, cfg)
        return Start(path, saved)
    if cfg.mode == "predict" and cfg.predict.backend == "onnx":
        return Start()
    path = eval_checkpoint_path(run_dir, cfg.load_from, cfg.eval_checkpoint, cfg.mode)
    return Start(path, read_checkpoint(path))
