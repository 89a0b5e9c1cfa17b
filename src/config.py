"""The config of a run: one dataclass schema per Hydra config group, composed into ``Config``.

Hydra merges each group's YAML onto its schema, so a wrong type, an unknown key or an unknown
group option fails at composition time, before any model or data is built; src/engine/preflight.py
then checks values. Schemas hold types, documentation and structural defaults. Recipe values
(schedule, lr, batch, cadence) are ``???`` here and live in exactly one YAML: the experiment
(conf/experiment/). Each layer owns its schema: the data's is src/data/config.py, a model's is in
its package (src/models/registry.py lists them).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from src.data.config import DatasetConfig
from src.models.registry import MODEL_PLUGINS


# ----------------------------------------------------------------------------- optimizer
@dataclass
class AdamWConfig:
    """torch.optim.AdamW; defaults are torch's."""

    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True  # the parameters are passed when it is built
    lr: float = MISSING
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class SGDConfig:
    """torch.optim.SGD; defaults are torch's."""

    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = MISSING
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


# ----------------------------------------------------------------------------- scheduler
@dataclass
class WarmupCosineConfig:
    """The reference schedule: linear warm-up from 0, then cosine to 0 at total_iters."""

    _target_: str = "src.engine.optim.warmup_cosine"
    _partial_: bool = True  # the optimizer is passed when it is built
    warmup_iters: int = MISSING
    total_iters: int = "${trainer.total_iter}"  # type: ignore[assignment]


@dataclass
class MultiStepConfig:
    """Linear warm-up from 0, then the lr times gamma at each milestone iteration."""

    _target_: str = "src.engine.optim.warmup_multistep"
    _partial_: bool = True
    warmup_iters: int = MISSING
    milestones: list[int] = MISSING
    gamma: float = 0.1


# ------------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    """Lightning Fabric settings and the training schedule (all counted in optimizer steps)."""

    accelerator: str = "auto"  # auto | cpu | gpu | cuda
    devices: int = 1  # processes per node (GPUs, or CPU processes for gloo DDP)
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_fork | ddp_spawn
    # 32-true | 16-mixed | bf16-mixed | auto (bf16-mixed where the device computes bf16 natively)
    precision: str = "32-true"
    total_iter: int = MISSING
    # Validate every N epochs and/or every N iterations (0 = never), and at the end.
    eval_every_epochs: int = MISSING
    eval_every_iters: int = MISSING
    limit_val_batches: int = 0  # cap on validation batches (0 = the whole split)
    checkpoint_every_iters: int = MISSING
    log_every_iters: int = MISSING
    grad_clip_norm: float | None = None
    accumulate_grad_batches: int = 1
    # lr x dataset.batch_size / base_batch_size (linear scaling, as MMEngine's auto_scale_lr).
    scale_lr: bool = False
    base_batch_size: int = MISSING  # the global batch the recipe's lr was tuned for
    ema_decay: float | None = None  # EMA of the weights, validated and kept as best
    compile: bool = False
    # torch.use_deterministic_algorithms(warn_only=True); see README "GPU install".
    deterministic: bool = False
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (CUDA only)
    num_val_images: int = 4  # drawn validation images per validation
    progress: bool = True  # rich progress bar on rank 0 (only on a terminal)


# -------------------------------------------------------------------------------- logger
@dataclass
class CSVLoggerConfig:
    """<run dir>/metrics.csv, one row per logged step."""

    _target_: str = "src.engine.loggers.CSVMetricsLogger"


@dataclass
class TensorBoardLoggerConfig:
    """<run dir>/tensorboard/."""

    _target_: str = "src.engine.loggers.tensorboard_logger"


@dataclass
class WandbLoggerConfig:
    """Weights & Biases; never blocks: offline unless it can go online."""

    _target_: str = "src.engine.loggers.wandb_logger"
    project: str = "srlane"
    entity: str | None = None
    # auto: online with an API key and a reachable server, else offline; online | offline
    wandb_mode: str = "auto"


# ---------------------------------------------------------------- evaluation and deployment
@dataclass
class EvalConfig:
    """How predictions are scored (the dataset's official metric) and how the eval model runs."""

    culane_iou_thresholds: list[float] = field(default_factory=lambda: [0.5])  # 0.5: headline
    culane_evaluator: str = "python"  # python (LaneATT/CLRNet/SRLane's) | cpp (the SCNN tool)
    # TuSimple run_time per image: null = measured; the reference writes a constant 1 ms.
    tusimple_run_time_ms: float | None = 1.0
    # validate/test/predict: torch.compile with inductor freezing (src/inference/compiled.py).
    compile: bool = False
    # validate/test/predict on the CPU: the network in int8 (src/inference/quantize.py, extra
    # deploy; the layers in its FP32_MODULES stay fp32), run through the frozen compile.
    int8: bool = False
    # What int8 calibrates on: auto (predict.input for mode=predict, else split) | split (the
    # training split) | a folder of images, a text file of image paths, a video or video folder.
    int8_calibration: str = "auto"
    int8_calibration_images: int = 64  # images (or frames) spread evenly over it


@dataclass
class PredictConfig:
    """mode=predict: images (a folder or a list file) or videos -> predictions + drawings."""

    input: str | None = None  # image folder / list file, or a video file / folder of videos
    cut_height: int | None = None  # rows cut from the top (default: dataset.cut_height)
    draw: bool = True  # drawn images; for videos, the annotated video
    backend: str = "torch"  # torch (the checkpoint) | onnx (mode=export's model.onnx)
    onnx: str | None = None  # backend=onnx: model.onnx or its folder (default <run dir>/export)


@dataclass
class ExportConfig:
    """mode=export: <run dir>/export/model.onnx (fp32, dynamic batch) and decode.json."""

    opset: int = 17  # >= 17 (GridSample needs 16; ONNX Runtime is tested with 17 here)


@dataclass
class SweepTrialConfig:
    """The job's trial in an Optuna search, set by the sweeper (src/launch/optuna_trial.py)."""

    storage: str | None = None  # an Optuna storage URL or the path of a journal file
    study_name: str | None = None
    trial: int | None = None  # the trial number


# ------------------------------------------------------------------------------- the run
@dataclass
class Config:
    model: Any = MISSING  # a model's schema (src/models/registry.py)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: Any = MISSING
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # Callbacks by name (conf/callbacks/): each a _target_ with its arguments; none by default.
    callbacks: dict[str, Any] = field(default_factory=dict)
    mode: str = "train"  # train | validate | test | predict | export
    seed: int = 0
    run_name: str = MISSING  # the run dir under outputs/; the same run_name resumes
    # auto (last.ckpt of the run dir when it exists) | never | a checkpoint path
    resume: str = "auto"
    load_from: str | None = None  # weights only: a checkpoint of this project or a reference file
    eval_checkpoint: str = "best"  # validate/test/predict/export without load_from: best | last
    sweep: SweepTrialConfig = field(default_factory=SweepTrialConfig)


def _slurm_gpus(accelerator: str, devices: int) -> int | None:
    """GPUs per node to request from SLURM: the devices of a GPU run, none for a CPU run."""
    return int(devices) if accelerator in ("gpu", "cuda") else None


_PROCESS_TAG = secrets.token_hex(3)


def _process_tag() -> str:
    """Six random hex digits drawn once per process: two runs started in the same second get
    two run dirs (the default run_name is the start time plus this tag)."""
    return _PROCESS_TAG


# Schemas that a group's YAML names in its defaults list (<option>_schema).
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "optimizer": {"adamw": AdamWConfig, "sgd": SGDConfig},
    "scheduler": {"warmup_cosine": WarmupCosineConfig, "multistep": MultiStepConfig},
    "logger": {
        "csv": CSVLoggerConfig,
        "tensorboard": TensorBoardLoggerConfig,
        "wandb": WandbLoggerConfig,
    },
    "model": {plugin.name: plugin.schema for plugin in MODEL_PLUGINS},
}


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (called before @hydra.main composes)."""
    if not OmegaConf.has_resolver("slurm_gpus"):
        OmegaConf.register_new_resolver("slurm_gpus", _slurm_gpus)
    if not OmegaConf.has_resolver("process_tag"):
        OmegaConf.register_new_resolver("process_tag", _process_tag)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in GROUP_SCHEMAS.items():
        for name, schema in schemas.items():
            cs.store(group=group, name=f"{name}_schema", node=schema)


class ConfigError(ValueError):
    """A composed config that cannot run; raised before any model or data is built."""
