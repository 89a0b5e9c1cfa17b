"""The config schema of the data layer: conf/dataset/*.yaml is validated against
``DatasetConfig`` (with its ``augment`` and ``synthetic`` parts)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


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
    blur_p: float = 0.2  # one of motion blur, median blur, third_op
    blur_kernel: list[int] = field(default_factory=lambda: [3, 5])
    third_op: str = "jpeg"  # jpeg (CULane) | coarse_dropout (TuSimple) | none (blur only)
    # JPEG quality 17..7: imgaug's JpegCompression(compression=(85, 95)) of the reference.
    jpeg_quality: list[int] = field(default_factory=lambda: [7, 17])
    dropout_fraction: list[float] = field(default_factory=lambda: [0.0, 0.05])  # cells dropped
    dropout_size: list[float] = field(default_factory=lambda: [0.02, 0.05])  # cell / image size
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
    """conf/dataset/*.yaml: which dataset, where, its image geometry and how it is loaded."""

    name: str = MISSING  # tusimple | culane | synthetic
    root: str = MISSING  # the dataset's folder; synthetic: where to generate it ("" = cache)
    ori_w: int = MISSING  # original image size
    ori_h: int = MISSING
    cut_height: int = MISSING  # rows cut from the top before resizing to img_w x img_h
    img_w: int = 800  # network input size
    img_h: int = 320
    max_lanes: int = MISSING
    num_points: int = 72  # rows a lane is sampled at
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    batch_size: int = MISSING  # the global batch per optimizer step (set by the recipe)
    eval_batch_size: int = 16
    num_workers: int = 4  # DataLoader workers per process
    skip_unreadable_images: bool = False  # skip (and count) undecodable images instead of failing
    filter_near_duplicates: bool = False  # CULane: the reference's near-duplicate frame filter
    cache_dir: str | None = None  # derived data; default $SRLANE_CACHE or ~/.cache/srlane-launcher
    # Training's image steps: worker | device (on the batch, src/data/device_augment.py) | auto
    augment_on: str = "auto"  # auto: device when training on CUDA, else worker
    decoded_cache: bool = False  # decode once: cropped + resized views memory-mapped on disk
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
