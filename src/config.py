"""Structured config schemas: every Hydra config group is validated against one of these.

Hydra merges each group's YAML onto its dataclass, so a wrong type, an unknown key or an
unknown group option fails at composition time, before any model or data is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """SRLane (``src.models.srlane.SRLane``); defaults are the reference R18 model."""

    _target_: str = "src.models.srlane.SRLane"
    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50
    # Local path to torchvision-layout ImageNet weights for the backbone (nothing downloads).
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
    jpeg_quality: list[int] = field(default_factory=lambda: [85, 95])
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
    strides: list[int] = field(default_factory=lambda: [8, 16, 32])
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
    # Where derived data (duplicate-filter results) is cached; default ~/.cache/srlane-launcher.
    cache_dir: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
