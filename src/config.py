"""Structured config schemas: every Hydra config group is validated against one of these.

Hydra merges each group's YAML onto its dataclass, so a wrong type, an unknown key or an
unknown group option fails at composition time, before any model or data is built.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


@dataclass
class ModelConfig:
    """SRLane (``src.models.srlane.SRLane``); defaults are the reference R18 model."""

    _target_: str = "src.models.srlane.SRLane"
    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50
    # imagenet (torchvision's weights, fetched once into torch.hub's cache) | local path | null
    pretrained_backbone: str | None = None
    img_w: int = 800
    img_h: int = 320
    num_points: int = 72
    max_lanes: int = 4
    hidden_dim: int = 64
    angle_map_size: list[int] = field(default_factory=lambda: [4, 10])
    z_mean: float = 0.9269
    z_std: float = 0.2379
    sample_points: int = 36
    num_groups: int = 6
    refine_layers: int = 1
    # Decoding
    conf_threshold: float = 0.4
    nms_thres: float = 50.0
    # Loss weights
    angle_loss_weight: float = 5.0
    cls_loss_weight: float = 2.0
    l1_loss_weight: float = 0.2
    iou_loss_weight: float = 2.0
    angle_level_weights: list[float] = field(default_factory=lambda: [0.2, 0.2, 1.0])
    # The reference re-multiplies the running angle-loss sum at each level, which makes the
    # effective level weights 0.04 / 0.2 / 1.0. False uses the nominal angle_level_weights.
    angle_loss_reference_quirk: bool = True
    # Not in the reference: match ground-truth lanes to proposals by the LaneIoU of the sketch
    # proposals instead of the refined lanes (the reference's dynamic assignment). Trained from
    # scratch, the reference's matching settles on a few fixed proposal slots far from the lanes
    # and regresses hundreds of pixels from them; matching on the proposals keeps the
    # refinement local.
    assign_on_priors: bool = False
    # Not in the reference: the LaneIoU loss widens predicted points by the target's slope
    # instead of the prediction's own, so a jagged prediction still gets a gradient.
    iou_loss_target_width: bool = False


@dataclass
class AugmentConfig:
    """The SRLane training augmentation list; each step fires with its probability."""

    enabled: bool = True
    hflip_p: float = 0.5
    channel_shuffle_p: float = 0.1
    brightness_p: float = 0.6
    brightness_mul: list[float] = field(default_factory=lambda: [0.85, 1.15])
    brightness_add: list[float] = field(default_factory=lambda: [-10.0, 10.0])
    hue_saturation_p: float = 0.7
    hue_saturation_add: list[float] = field(default_factory=lambda: [-10.0, 10.0])
    # One of motion blur / median blur / a third op: "jpeg" (CULane) or "coarse_dropout"
    # (TuSimple).
    blur_p: float = 0.2
    blur_kernel: list[int] = field(default_factory=lambda: [3, 5])
    third_op: str = "jpeg"
    # JPEG quality (1-100, higher = better). The reference's imgaug JpegCompression(compression=
    # (85, 95)) is a compression *strength*: imgaug maps it to quality 17..7, used here.
    jpeg_quality: list[int] = field(default_factory=lambda: [7, 17])
    # Coarse dropout (imgaug CoarseDropout(p=(0, 0.05), size_percent=(0.02, 0.05))): fraction
    # of mask cells dropped, and the mask resolution as a fraction of the image size.
    dropout_fraction: list[float] = field(default_factory=lambda: [0.0, 0.05])
    dropout_size: list[float] = field(default_factory=lambda: [0.02, 0.05])
    affine_p: float = 0.7
    translate: float = 0.1  # fraction of width / height
    rotate: float = 10.0  # degrees
    scale: list[float] = field(default_factory=lambda: [0.8, 1.2])
    shear_x: float = 10.0  # degrees


@dataclass
class SyntheticConfig:
    """The built-in synthetic TuSimple-format dataset (generated on first use)."""

    num_train: int = 1000
    num_val: int = 200
    num_test: int = 200
    width: int = 1280
    height: int = 720
    seed: int = 0


@dataclass
class DatasetConfig:
    name: str = MISSING  # tusimple | culane | synthetic
    # Dataset root. For "synthetic", the directory to generate into (created on first use).
    root: str = MISSING
    ori_w: int = MISSING
    ori_h: int = MISSING
    cut_height: int = MISSING
    img_w: int = 800
    img_h: int = 320
    max_lanes: int = MISSING
    num_points: int = 72
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    batch_size: int = 40
    eval_batch_size: int = 16
    num_workers: int = 4
    # Unreadable images: raise (default) or skip them and report the count.
    skip_unreadable_images: bool = False
    # CULane: the reference's near-duplicate-frame filter for training lists (reads every image).
    filter_near_duplicates: bool = False
    # Where derived data (generated datasets, duplicate-filter results) is cached; default
    # $SRLANE_CACHE, else ~/.cache/srlane-launcher (src/data/cache.py).
    cache_dir: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True  # main passes the parameters
    lr: float = 6e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False


@dataclass
class WarmupCosineConfig:
    """The reference schedule: linear warm-up from 0, then cosine to 0 at total_iters."""

    _target_: str = "src.optim.warmup_cosine"
    _partial_: bool = True  # main passes the optimizer
    warmup_iters: int = 800
    total_iters: int = "${trainer.total_iter}"  # type: ignore[assignment]


@dataclass
class MultiStepConfig:
    """Linear warm-up from 0, then the lr times gamma at each milestone iteration."""

    _target_: str = "src.optim.warmup_multistep"
    _partial_: bool = True
    warmup_iters: int = 800
    milestones: list[int] = field(default_factory=lambda: [30000, 40000])
    gamma: float = 0.1


@dataclass
class TrainerConfig:
    """Lightning Fabric settings and the training schedule (all counted in optimizer steps)."""

    accelerator: str = "auto"  # auto | cpu | gpu | cuda
    devices: int = 1  # processes per node (GPUs, or CPU processes for gloo DDP)
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp | ddp_fork | ddp_spawn
    # 32-true | 16-mixed | bf16-mixed | auto (bf16-mixed where the device computes bf16 natively:
    # a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX; else 32-true)
    precision: str = "32-true"
    total_iter: int = 44440
    # Validation on the val split every N epochs and/or every N iterations (0 = never), and
    # always at the end of training.
    eval_every_epochs: int = 3
    eval_every_iters: int = 0
    # Cap on validation batches (0 = the whole split); for quick debugging runs.
    limit_val_batches: int = 0
    checkpoint_every_iters: int = 1000
    log_every_iters: int = 50
    grad_clip_norm: float | None = None
    accumulate_grad_batches: int = 1
    # Linear lr scaling (as MMEngine's auto_scale_lr): with scale_lr, the optimizer's lr becomes
    # lr x dataset.batch_size (the global batch per iteration, whatever the number of processes)
    # / base_batch_size. base_batch_size is the global batch the recipe's lr was tuned for: 40,
    # the reference recipe's (AdamW 6e-4 at 40); conf/experiment/synthetic_cpu.yaml sets its 8.
    # Off by default: the reference does not scale.
    scale_lr: bool = False
    base_batch_size: int = 40
    # Exponential moving average of the weights, used for validation and the best checkpoint.
    ema_decay: float | None = None
    compile: bool = False
    # torch.use_deterministic_algorithms (warn-only: ops without a deterministic kernel, such as
    # grid_sample's CUDA backward, warn and stay non-deterministic); CPU runs are reproducible
    # without it.
    deterministic: bool = False
    # Multi-process runs: BatchNorm statistics over the global batch instead of each process's
    # share (the reference's global batch of 40 on 4 GPUs is 10 images per GPU).
    sync_batchnorm: bool = False
    # Images with drawn predicted (red) and true (green) lanes saved at each validation.
    num_val_images: int = 4
    progress: bool = True  # rich progress bar on rank 0 (only on a terminal)


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv | tensorboard | wandb
    project: str = "srlane"
    # wandb only: auto = online when an API key is configured and api.wandb.ai is reachable,
    # else offline (never blocks). online / offline force the mode.
    wandb_mode: str = "auto"
    entity: str | None = None


@dataclass
class EvalConfig:
    """How predictions are scored (the official metric of the dataset)."""

    # CULane: IoU thresholds (0.5 is the headline F1) and the evaluator recipe:
    # "python" (the evaluator used by LaneATT/CLRNet/SRLane) or "cpp" (the original SCNN tool).
    culane_iou_thresholds: list[float] = field(default_factory=lambda: [0.5])
    culane_evaluator: str = "python"
    # TuSimple: run_time written per image. None writes the measured forward time per image;
    # the reference writes a constant 1 ms, which keeps the official >200 ms rule inert.
    tusimple_run_time_ms: float | None = 1.0
    # mode=validate/test/predict (torch backend): run the network through torch.compile with
    # inductor freezing (weights folded as constants into prepacked oneDNN kernels; bf16 ones
    # under trainer.precision=bf16-mixed). The first batch of each shape compiles (10-20 s on a
    # CPU), later ones are faster (scripts/bench_model.py --paths). Not used for the validations
    # inside training, where the weights change between calls.
    compile: bool = False
    # mode=validate/test/predict on the CPU (torch backend): the network in int8 (src/quantize.py;
    # torchao, from the optional extra "deploy"; the layers listed in its FP32_MODULES stay
    # fp32), run through the frozen compile (trainer.precision=auto picks 32-true).
    # scripts/bench_model.py --paths measures its speed and F1 against the other paths and the
    # machine's limit.
    int8: bool = False
    # The images int8 is calibrated on (activation ranges), the same on every rank: "auto" =
    # predict.input for mode=predict (the images or videos being predicted), else "split"; "split"
    # = the dataset's training split; or a path: a folder of images, a text file of image paths,
    # a video or a folder of videos (the user's own frames, preprocessed as predicted).
    int8_calibration: str = "auto"
    # How many images (or frames) of it, spread evenly over all of it.
    int8_calibration_images: int = 64


@dataclass
class PredictConfig:
    """mode=predict: images from a folder or a list file, or videos (a video file or a folder of
    videos) -> a predictions file + drawn images / annotated videos."""

    # A folder (searched recursively) or a text file of image paths; or a video file, or a
    # folder holding videos and no images.
    input: str | None = None
    # Crop applied to every input image before resizing (default: the dataset's cut_height).
    cut_height: int | None = None
    draw: bool = True  # drawn images; for videos, the annotated video
    # torch: the checkpoint's weights (load_from or the run's best); onnx: the exported
    # model.onnx + decode.json run with ONNX Runtime (the optional extra "deploy").
    backend: str = "torch"
    # backend=onnx: model.onnx or the folder holding it and decode.json (mode=export writes
    # both); default: <run dir>/export.
    onnx: str | None = None


@dataclass
class ExportConfig:
    """mode=export: the trained network as <run dir>/export/model.onnx (fp32, dynamic batch) and
    decode.json, what decoding needs (src/models/srlane/decode_np.py)."""

    opset: int = 17  # >= 17 (GridSample needs 16; 17 is what ONNX Runtime is tested with here)


@dataclass
class SweepTrialConfig:
    """The job's trial in an Optuna search (hparams_search=optuna): the sweeper
    (hydra_plugins/srlane_optuna_sweeper) sets all three; the job then reports each validation
    to the trial, stops when the study's pruner says so and records its outcome on the trial
    (src/pruning.py). Not set by hand."""

    storage: str | None = None  # an Optuna storage URL or the path of a journal file
    study_name: str | None = None
    trial: int | None = None  # the trial number


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    # Callbacks by name (conf/callbacks/): each a _target_ with its arguments; none by default.
    callbacks: dict[str, Any] = field(default_factory=dict)
    mode: str = "train"  # train | validate | test | predict | export
    seed: int = 0
    # Run directory name under outputs/. The same run_name resumes (resume=auto).
    run_name: str = MISSING
    # auto: continue from <run dir>/checkpoints/last.ckpt when it exists, else start fresh;
    # never: start fresh and refuse a run dir that already has checkpoints; or a checkpoint path.
    resume: str = "auto"
    # Weights only: this project's checkpoint or a reference SRLane file ({"net": ...}).
    load_from: str | None = None
    # Which checkpoint of the run validate/test/predict/export use when load_from is not given.
    eval_checkpoint: str = "best"  # best | last
    # Set by the Optuna sweeper for each trial of hparams_search=optuna; empty otherwise.
    sweep: SweepTrialConfig = field(default_factory=SweepTrialConfig)


def _slurm_gpus(accelerator: str, devices: int) -> int | None:
    """GPUs per node to request from SLURM: the devices of a GPU run, none for a CPU run."""
    return int(devices) if accelerator in ("gpu", "cuda") else None


_PROCESS_TAG = secrets.token_hex(3)


def _process_tag() -> str:
    """Six random hex digits drawn once per process: two runs started in the same second get
    two run dirs (the default run_name is the start time plus this tag)."""
    return _PROCESS_TAG


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (called before @hydra.main composes)."""
    if not OmegaConf.has_resolver("slurm_gpus"):
        OmegaConf.register_new_resolver("slurm_gpus", _slurm_gpus)
    if not OmegaConf.has_resolver("process_tag"):
        OmegaConf.register_new_resolver("process_tag", _process_tag)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="optimizer", name="adamw_schema", node=AdamWConfig)
    cs.store(group="optimizer", name="sgd_schema", node=SGDConfig)
    cs.store(group="scheduler", name="warmup_cosine_schema", node=WarmupCosineConfig)
    cs.store(group="scheduler", name="multistep_schema", node=MultiStepConfig)


class ConfigError(ValueError):
    """A composed config that cannot run; raised before any model or data is built."""
