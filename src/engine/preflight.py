"""Every check that refuses a run, in one place, run before any data, model or process is made.

``check_config`` looks at the composed config alone (unknown keys, values outside their
choices, numbers out of range); ``check_environment`` at the config against this machine
(devices, precision support, files named in the config). Messages name the key and how to fix
it. ``warn_config`` logs what is allowed but probably not what the user wants.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import is_dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from src.config import ConfigError
from src.data.dataset import as_dataset_config, dataset_config_problems
from src.inference.quantize import require_torchao
from src.launch.processes import torchrun_layout
from src.metrics.culane import iou_threshold_problems
from src.metrics.tusimple import run_time_problems
from src.models.registry import plugin_for

log = logging.getLogger(__name__)

# Allowed values of string options (the schema checks types, this checks values). Dataset values
# are checked by the data module that uses them (dataset_config_problems).
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("train", "validate", "test", "predict", "export"),
    "predict.backend": ("torch", "onnx"),
    "eval_checkpoint": ("best", "last"),
    "trainer.accelerator": ("auto", "cpu", "gpu", "cuda"),
    "trainer.strategy": ("auto", "ddp", "ddp_fork", "ddp_spawn"),
    "trainer.precision": ("32-true", "16-mixed", "bf16-mixed", "auto"),
    "evaluation.culane_evaluator": ("python", "cpp"),
}
# Counts that must be >= 1, and counts where 0 means "never" / "no limit".
POSITIVE = (
    "trainer.total_iter",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accumulate_grad_batches",
    "trainer.base_batch_size",
    "trainer.checkpoint_every_iters",
    "trainer.log_every_iters",
    "dataset.batch_size",
    "dataset.eval_batch_size",
    "evaluation.int8_calibration_images",
)
NON_NEGATIVE = (
    "trainer.eval_every_epochs",
    "trainer.eval_every_iters",
    "trainer.limit_val_batches",
    "trainer.num_val_images",
    "dataset.num_workers",
)


def _unknown_keys(node: DictConfig, path: str) -> list[str]:
    """Keys present in ``node`` (recursively) that its dataclass schema does not declare.

    Hydra lets ``+key=value`` add keys even to structured configs, so this is checked again
    after composition.
    """
    unknown = []
    schema = OmegaConf.get_type(node)
    declared = {f.name for f in dataclasses.fields(schema)} if is_dataclass(schema) else None
    for key in node.keys():
        key_path = f"{path}.{key}" if path else str(key)
        if declared is not None and key not in declared:
            unknown.append(f"{key_path} (not a field of {schema.__name__}: {sorted(declared)})")
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            unknown.extend(_unknown_keys(child, key_path))
    return unknown


# Allowed values of keys that only some options of a group have.
OPTIONAL_CHOICES: dict[str, tuple[str, ...]] = {
    "logger.wandb_mode": ("auto", "online", "offline"),
}


def _unset_keys(node: DictConfig, path: str) -> list[str]:
    """Keys left ``???`` (recipe values the schemas leave to the experiment)."""
    unset = []
    for key in node.keys():
        key_path = f"{path}.{key}" if path else str(key)
        if OmegaConf.is_missing(node, key):
            unset.append(key_path)
            continue
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            unset.extend(_unset_keys(child, key_path))
    return unset


def _model_choices(cfg: DictConfig) -> dict[str, tuple[str, ...]]:
    """The model's own choices (its plugin's), e.g. model.backbone."""
    try:
        plugin = plugin_for(cfg.model._target_)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return {f"model.{key}": tuple(values) for key, values in plugin.choices.items()}


def check_config(cfg: DictConfig) -> None:
    """Reject unknown keys, unset recipe values and values the run cannot use, with the key and
    the valid choices."""
    problems = [f"unknown key {k}" for k in _unknown_keys(cfg, "")]
    unset = _unset_keys(cfg, "")
    if unset:
        problems.append(
            f"not set: {', '.join(unset)} (a recipe value: set it in your experiment, "
            "conf/experiment/, or on the command line)"
        )
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    for key, allowed in {**CHOICES, **_model_choices(cfg)}.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            problems.append(f"{key}={value!r} is not one of {list(allowed)}")
    for key, allowed in OPTIONAL_CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            problems.append(f"{key}={value!r} is not one of {list(allowed)}")
    for key in POSITIVE:
        if OmegaConf.select(cfg, key) < 1:
            problems.append(f"{key}={OmegaConf.select(cfg, key)} must be >= 1")
    for key in NON_NEGATIVE:
        if OmegaConf.select(cfg, key) < 0:
            problems.append(f"{key}={OmegaConf.select(cfg, key)} must be >= 0 (0 = never)")
    if not any(p.startswith("unknown key dataset.") for p in problems):
        problems += dataset_config_problems(as_dataset_config(cfg.dataset))
    if cfg.mode == "predict" and not cfg.predict.input:
        problems.append(
            "mode=predict needs predict.input=<image folder or list file, video or video folder>"
        )
    problems += plugin_for(cfg.model._target_).config_problems(cfg.model)
    problems += _int8_problems(cfg)
    problems += [
        f"evaluation.culane_iou_thresholds: {p}"
        for p in iou_threshold_problems(list(cfg.evaluation.culane_iou_thresholds))
    ]
    problems += run_time_problems(cfg.evaluation.tusimple_run_time_ms)
    if cfg.export.opset < 17:
        problems.append(f"export.opset={cfg.export.opset} must be >= 17")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _int8_problems(cfg: DictConfig) -> list[str]:
    """evaluation.int8 quantizes fixed weights of the torch model (src/inference/quantize.py)."""
    if not cfg.evaluation.int8:
        return []
    problems = []
    if cfg.mode not in ("validate", "test", "predict"):
        problems.append(
            f"evaluation.int8=true applies to mode=validate/test/predict (fixed weights), not "
            f"mode={cfg.mode}: drop it, or run the trained checkpoint with mode=validate"
        )
    if cfg.mode == "predict" and cfg.predict.backend != "torch":
        problems.append("evaluation.int8=true runs the torch model: use predict.backend=torch")
    if cfg.trainer.precision not in ("32-true", "auto"):
        problems.append(
            f"evaluation.int8=true with trainer.precision={cfg.trainer.precision}: the layers "
            "left in fp32 run slower under autocast around int8 ones: use trainer.precision=32-true"
        )
    return problems


def _check_gpu(trainer: DictConfig) -> None:
    available = torch.cuda.device_count()
    if available == 0:
        raise ConfigError(
            f"trainer.accelerator={trainer.accelerator} but no CUDA GPU is visible "
            "(torch.cuda.is_available() is False): use trainer=cpu, or install the CUDA "
            "build of torch (see README)"
        )
    if trainer.devices > available:
        raise ConfigError(
            f"trainer.devices={trainer.devices} but only {available} CUDA GPU(s) are visible"
        )
    if trainer.precision == "bf16-mixed" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"trainer.precision=bf16-mixed but {torch.cuda.get_device_name()} has no bf16 "
            "support: use 16-mixed or 32-true"
        )


def _check_cpu(trainer: DictConfig) -> None:
    cores = os.cpu_count() or 1
    if trainer.devices > cores:
        raise ConfigError(
            f"trainer.devices={trainer.devices} CPU processes but this machine has {cores} cores"
        )
    if trainer.precision == "16-mixed":
        # Fabric would silently turn it into bf16 on the CPU.
        raise ConfigError(
            "trainer.precision=16-mixed needs a CUDA GPU (fp16 autocast is not supported "
            "for training on the CPU): use bf16-mixed or 32-true"
        )
    if trainer.sync_batchnorm and trainer.devices * trainer.num_nodes > 1:
        raise ConfigError(
            "trainer.sync_batchnorm=true needs CUDA GPUs (torch's SyncBatchNorm runs on GPU "
            "modules only): drop it for a CPU run"
        )


def _check_int8(accelerator: str) -> None:
    if accelerator != "cpu":
        raise ConfigError(
            "evaluation.int8=true runs oneDNN int8 kernels on the CPU: add trainer=cpu (on a "
            "GPU, use trainer.precision=bf16-mixed or 16-mixed instead)"
        )
    try:
        require_torchao()
    except ImportError as err:
        raise ConfigError(str(err)) from None


def _check_multi_node_launch(trainer: DictConfig) -> None:
    """Several nodes need a launcher that starts src.main on each of them and tells each its
    node rank; alone, every node would take itself for node 0 and wait for the others."""
    launched = torchrun_layout() is not None or "SLURM_PROCID" in os.environ
    if trainer.num_nodes == 1 or launched or "NODE_RANK" in os.environ:
        return
    raise ConfigError(
        f"trainer.num_nodes={trainer.num_nodes} but no multi-node launcher started this "
        "process: run it on every node with torchrun (--nnodes, --node-rank, --master-addr; "
        "see README), or submit it with --multirun hydra/launcher=slurm, or use "
        "trainer.num_nodes=1"
    )


def _check_torchrun(cfg: DictConfig) -> None:
    """A torchrun launch and the config must describe the same processes: Lightning checks only
    their product (devices x num_nodes = WORLD_SIZE), and a wrong split puts ranks on the wrong
    devices and node ranks. torchrun starts every process, and each runs src.main itself: the
    run_name must be given, or each would make its own run dir."""
    layout = torchrun_layout()
    if layout is None:
        return
    trainer, problems = cfg.trainer, []
    if trainer.num_nodes != layout.nodes:
        problems.append(
            f"trainer.num_nodes={trainer.num_nodes} but torchrun runs {layout.nodes} node(s) "
            f"(--nnodes {layout.nodes}): set trainer.num_nodes={layout.nodes}"
        )
    if trainer.devices != layout.per_node:
        problems.append(
            f"trainer.devices={trainer.devices} but torchrun starts {layout.per_node} "
            f"process(es) per node (--nproc-per-node {layout.per_node}): set "
            f"trainer.devices={layout.per_node}"
        )
    if trainer.strategy not in ("auto", "ddp"):
        problems.append(
            f"trainer.strategy={trainer.strategy} starts processes itself, but torchrun has "
            "started them: use trainer.strategy=ddp"
        )
    world = layout.nodes * layout.per_node
    if (
        world > 1
        and OmegaConf.is_interpolation(cfg, "run_name")
        and "SLURM_JOB_ID" not in os.environ
    ):
        problems.append(
            "run_name is not set: each of the processes torchrun starts would make its own run "
            "dir (the default run_name is the start time + a random tag): give every node the "
            "same run_name=<name>"
        )
    if problems:
        raise ConfigError(
            "this torchrun launch does not match the config:\n  - " + "\n  - ".join(problems)
        )


def native_bf16(accelerator: str) -> bool:
    """Whether the device computes bf16 in hardware: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 autocast is emulated and slower than fp32)."""
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    # torch's own CPU feature probes (private helpers, stable since torch 2.1; absent: no bf16)
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(cfg: DictConfig) -> None:
    """trainer.precision=auto becomes bf16-mixed where the device computes bf16 natively, else
    32-true (logged), once, before the checks; everything after sees the concrete value."""
    trainer = cfg.trainer
    if trainer.precision != "auto":
        return
    if cfg.evaluation.int8:
        trainer.precision = "32-true"
        log.info("trainer.precision=auto: 32-true (evaluation.int8: int8 layers, the rest fp32)")
        return
    accelerator = trainer.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    native = native_bf16(accelerator)
    trainer.precision = "bf16-mixed" if native else "32-true"
    log.info(
        "trainer.precision=auto: %s (%s)",
        trainer.precision,
        "the device computes bf16 natively" if native else "no native bf16 on this device",
    )


def check_environment(cfg: DictConfig) -> str:
    """Refuse, before any work, what this machine cannot run; returns the accelerator used
    ("gpu" or "cpu")."""
    trainer = cfg.trainer
    accelerator = trainer.accelerator
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    if accelerator in ("gpu", "cuda"):
        accelerator = "gpu"
        _check_gpu(trainer)
    else:
        _check_cpu(trainer)
    if cfg.load_from and not Path(cfg.load_from).is_file():
        raise ConfigError(f"load_from={cfg.load_from}: no such file")
    if cfg.evaluation.int8:
        _check_int8(accelerator)
    _check_multi_node_launch(trainer)
    _check_torchrun(cfg)
    world = trainer.devices * trainer.num_nodes
    per_step = world * trainer.accumulate_grad_batches
    if cfg.mode == "train" and cfg.dataset.batch_size % per_step != 0:
        raise ConfigError(
            f"dataset.batch_size={cfg.dataset.batch_size} (the global batch per iteration) must "
            f"be divisible by devices x num_nodes x accumulate_grad_batches = {per_step}"
        )
    return accelerator


def warn_config(cfg: DictConfig) -> None:
    """Log what runs but is probably not what the user wants."""
    if (
        cfg.mode == "train"
        and cfg.dataset.name != "synthetic"
        and not OmegaConf.select(cfg, "model.pretrained_backbone", default=None)
    ):
        log.warning(
            "training on %s with a randomly initialised backbone (model.pretrained_backbone="
            "null): the reference initialises it from ImageNet (model.pretrained_backbone="
            "imagenet); from scratch its training stalls far below the paper's F1",
            cfg.dataset.name,
        )
