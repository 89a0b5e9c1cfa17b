"""The lane dataset (map-style, keyed by (epoch, index)) and ``build_dataset``."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, get_worker_info

from .augment import validate_augment_config
from .cache import cache_root
from .config import AugmentConfig, DatasetConfig, SyntheticConfig
from .culane import read_culane_split, resolve_split
from .decoded_cache import DecodedCache, open_decoded_cache
from .errors import DatasetError
from .formats import read_format_split
from .lane_checks import require_usable_lane
from .near_duplicates import filter_near_duplicates
from .pipeline import (
    ImageReadError,
    LanePipeline,
    Processed,
    TargetError,
    TargetsFn,
    input_array,
    read_image,
)
from .samples import LaneSample
from .synthetic import SYNTHETIC_SPLITS, default_synthetic_root, generate_synthetic_tusimple
from .synthetic_formats import GENERATOR_VERSION as FORMATS_GENERATOR
from .synthetic_formats import generate_synthetic_curvelanes, generate_synthetic_llamas
from .tusimple import read_tusimple_split

log = logging.getLogger(__name__)

# Fresh draws tried when an augmented sample's targets cannot be built (as the reference).
MAX_ATTEMPTS = 10
DATASET_NAMES = (
    "tusimple",
    "culane",
    "synthetic",
    "llamas",
    "llamas_synthetic",
    "curvelanes",
    "curvelanes_synthetic",
    "custom",
)

Key = int | tuple[int, int]
HANDOVERS = ("float", "worker", "device")
AUGMENT_ON = ("auto", "worker", "device")


class LaneDataset(Dataset):
    """Lane images with the model's training targets.

    ``dataset[(epoch, index)]`` (keys from EpochSampler) or ``dataset[index]`` (= epoch 0)
    returns a dict: "img" float32 (3, img_h, img_w) RGB in [0, 1] (other hand-overs:
    ``set_handover``); the model's targets by name
    (tensors, or lists of tensors per feature level) when a ``targets_fn`` is given; "meta"
    (see ``_item``). In training the augmentation is drawn from
    ``numpy.random.default_rng([seed, epoch, index])`` (retries: ``[seed, epoch, index,
    attempt]``), so it depends on the sample key only, never on the worker.
    """

    def __init__(
        self,
        samples: Sequence[LaneSample],
        cfg: DatasetConfig,
        training: bool,
        seed: int = 0,
        name: str = "",
        split: str = "",
        root: str | Path = "",
        targets_fn: TargetsFn | None = None,
    ) -> None:
        if not samples:
            raise DatasetError(f"{name} split {split!r} under {root} has no samples")
        if seed < 0:
            raise DatasetError(f"seed must be >= 0 (it seeds numpy's SeedSequence), got {seed}")
        cfg = as_dataset_config(cfg)
        self.samples = list(samples)
        self.cfg = cfg
        self.training = training
        self.seed = int(seed)
        self.name, self.split, self.root = name, split, str(root)
        self.pipeline = LanePipeline(cfg, training, targets_fn)
        self.expected_size = (int(cfg.ori_h), int(cfg.ori_w))
        self.skip_unreadable = bool(cfg.skip_unreadable_images)
        # Images skipped: missing ones at construction, plus undecodable ones met while loading
        # (counted per process: each DataLoader worker keeps its own list).
        self.skipped: list[str] = []
        self._threads_configured = False
        # What a worker hands over (set_handover): "float" as evaluation and the tests read it.
        self.handover = "float"
        self.decoded: DecodedCache | None = None  # dataset.decoded_cache (attach_decoded_cache)

    def set_handover(self, mode: str) -> None:
        """What an item's "img" is: "float" (default) float32 (3, H, W) in [0, 1], every step
        applied; "worker" uint8 (H, W, 3) RGB, every step applied; "device" uint8 (H, W, 3), the
        view with the image steps left to the device (src/data/device_draws.py), their
        parameters under the item's "augment". ``prepare_batch`` (src/data/device_input.py)
        turns a batch of any of them into the float model input; call this before the loader
        starts its workers."""
        if mode not in HANDOVERS:
            raise ValueError(f"hand-over must be one of {HANDOVERS}, got {mode!r}")
        self.handover = mode

    def attach_decoded_cache(self, threads: int | None = None) -> None:
        """Read network views from the decoded cache (built or refreshed now)."""
        cfg = self.cfg
        settings = {
            "cut_height": int(cfg.cut_height),
            "img_w": int(cfg.img_w),
            "img_h": int(cfg.img_h),
            "ori_w": int(cfg.ori_w),
            "ori_h": int(cfg.ori_h),
            "resize": "cv2.INTER_CUBIC",
            # Images with their own size and crop (CurveLanes): the distinct pairs.
            "per_image": sorted(
                {(*s.ori_size, s.cut_height) for s in self.samples if s.cut_height is not None}
            ),
        }
        self.decoded = open_decoded_cache(
            cache_root(cfg.cache_dir),
            [s.img_path for s in self.samples],
            (self.pipeline.img_h, self.pipeline.img_w),
            settings,
            self._decode_view,
            threads,
        )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: Key) -> dict:
        epoch, index = _split_key(key)
        if not 0 <= index < len(self.samples):
            raise IndexError(f"index {index} out of range for {len(self.samples)} samples")
        self._configure_threads()
        replaced: list[str] = []
        for offset in range(len(self.samples)):
            position = (index + offset) % len(self.samples)
            sample = self.samples[position]
            try:
                view = self._network_view(position, sample)
            except ImageReadError as err:
                if not self.skip_unreadable:
                    raise DatasetError(
                        f"{err} (listed at {sample.source}; set "
                        "dataset.skip_unreadable_images=true to skip such images)"
                    ) from None
                self.skipped.append(sample.img_path)
                replaced.append(sample.img_path)
                log.warning(
                    "%s (listed at %s); skipped, %d image(s) skipped so far in this process",
                    err,
                    sample.source,
                    len(self.skipped),
                )
                continue
            lanes, train_lanes = sample.load_lanes()
            # The draw is keyed on the requested index, also when a neighbour stands in.
            processed = self._process(sample, train_lanes, view, epoch, index)
            return self._item(sample, lanes, position, processed, replaced)
        raise DatasetError(f"no readable image in {self.name} split {self.split!r} ({self.root})")

    def _configure_threads(self) -> None:
        # DataLoader workers each process one sample at a time: OpenCV's own thread pool would
        # only oversubscribe the cores.
        if not self._threads_configured:
            if get_worker_info() is not None:
                cv2.setNumThreads(1)
            self._threads_configured = True

    def _network_view(self, position: int, sample: LaneSample) -> np.ndarray:
        """The cropped and resized RGB uint8 view of a sample: from the decoded cache when
        attached, else decoded now."""
        if self.decoded is not None:
            return self.decoded.view(position)
        return self.pipeline.network_view(self._read(sample), self._geometry(sample)[1])

    def _decode_view(self, position: int) -> np.ndarray:
        """What the decoded cache stores for sample ``position``."""
        sample = self.samples[position]
        return self.pipeline.network_view(self._read(sample), self._geometry(sample)[1])

    def _geometry(self, sample: LaneSample) -> tuple[tuple[int, int], int]:
        """((height, width), cut_height) of a sample's image: its own where the reader knows
        them (CurveLanes: three image sizes, each with its crop), else the config's."""
        size = tuple(sample.ori_size) if sample.ori_size is not None else self.expected_size
        cut = sample.cut_height if sample.cut_height is not None else self.pipeline.cut_height
        return (int(size[0]), int(size[1])), int(cut)

    def _read(self, sample: LaneSample) -> np.ndarray:
        """The decoded image; ImageReadError when unreadable (skippable), DatasetError when its
        size is not its expected one, the configured ori_w x ori_h or the size its reader gave
        it (lanes and crop would not fit it: never skipped, the config or the data is wrong)."""
        image = read_image(sample.img_path)
        expected, _ = self._geometry(sample)
        if image.shape[:2] != expected:
            height, width = expected
            own = sample.ori_size is not None and tuple(sample.ori_size) != self.expected_size
            whose = "its label or list gives" if own else "the dataset config says ori_w x ori_h ="
            raise DatasetError(
                f"image {sample.img_path} (listed at {sample.source}) is "
                f"{image.shape[1]}x{image.shape[0]} but {whose} {width}x{height}: expected every "
                "image of the dataset at that size (set dataset.ori_w / ori_h, or run "
                "scripts/check_dataset.py to list the others)"
            )
        return image

    def _process(
        self,
        sample: LaneSample,
        lanes: Sequence[np.ndarray],
        view: np.ndarray,
        epoch: int,
        index: int,
    ) -> Processed:
        """Evaluation: the view as it is. Training: the draw keyed on (seed, epoch, index),
        redrawn (keyed on the attempt number too) while the targets fail, as the reference
        retries; its image steps applied here, or (hand-over "device") left to the device."""
        (height, width), cut = self._geometry(sample)
        if self.pipeline.augment is None:
            try:
                return self.pipeline.process_view(
                    view, (width, height), lanes, None, cut_height=cut
                )
            except TargetError as err:
                raise DatasetError(
                    f"targets failed for {sample.img_path} ({sample.source}): {err}"
                ) from err
        error = None
        for attempt in range(MAX_ATTEMPTS):
            entropy = [self.seed, epoch, index] + ([attempt] if attempt else [])
            draw = self.pipeline.draw(np.random.default_rng(entropy))
            steps_on = "device" if self.handover == "device" else "worker"
            try:
                return self.pipeline.process_view(view, (width, height), lanes, draw, steps_on, cut)
            except TargetError as err:
                error = err
        raise DatasetError(
            f"targets failed for {MAX_ATTEMPTS} augmentation draws of {sample.img_path} "
            f"({sample.source}); last error: {error}"
        )

    def _item(
        self,
        sample: LaneSample,
        lanes: Sequence[np.ndarray],
        position: int,
        out: Processed,
        replaced: list[str],
    ) -> dict:
        """The item dict. Its "meta": index (position of this sample in the dataset), img_path
        (absolute), img_name (relative to root, as in the label/list file), ori_size (h, w),
        cut_height, category (CULane test category or None), lanes (ground truth in original
        pixels, float64 (N, 2) each), augment (the draw as a dict, None in evaluation), replaces
        (paths of unreadable images this sample stands in for when skip_unreadable_images is
        set; evaluation drops such items); TuSimple-format data adds h_samples and gt_xs.
        """
        ori_size, cut_height = self._geometry(sample)
        meta = {
            "index": position,
            "img_path": sample.img_path,
            "img_name": sample.img_name,
            "ori_size": ori_size,
            "cut_height": cut_height,
            "category": sample.category,
            "lanes": [lane.copy() for lane in lanes],
            "augment": out.draw.as_dict() if out.draw is not None else None,
            "replaces": replaced,
        }
        if sample.h_samples is not None:
            meta["h_samples"] = list(sample.h_samples)
            meta["gt_xs"] = [list(xs) for xs in sample.gt_xs or ()]
        targets = {
            name: [torch.from_numpy(a) for a in value]
            if isinstance(value, list)
            else torch.from_numpy(value)
            for name, value in out.targets.items()
        }
        item = {"img": self._handed_over(out.image), **targets, "meta": meta}
        if self.handover == "device" and out.device_params is not None:
            item["augment"] = {k: torch.from_numpy(v) for k, v in out.device_params.items()}
        return item

    def _handed_over(self, image: np.ndarray) -> torch.Tensor:
        if self.handover == "float":
            return torch.from_numpy(input_array(image))
        return torch.from_numpy(np.ascontiguousarray(image))


def _split_key(key: Key) -> tuple[int, int]:
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"a dataset key is an index or (epoch, index), got {key!r}")
        return int(key[0]), int(key[1])
    if isinstance(key, (int, np.integer)) or (torch.is_tensor(key) and key.ndim == 0):
        return 0, int(key)
    raise TypeError(f"a dataset key is an index or (epoch, index), got {key!r}")


def as_dataset_config(cfg: DatasetConfig | DictConfig | dict) -> DatasetConfig:
    """A plain DatasetConfig from a dataclass, an OmegaConf node or a dict (attribute access on
    OmegaConf nodes is slow in the per-sample path, and plain dataclasses pickle cheaply)."""
    if isinstance(cfg, DatasetConfig):
        return cfg
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    values = dict(cfg)
    if isinstance(values.get("augment"), dict):
        values["augment"] = AugmentConfig(**values["augment"])
    if isinstance(values.get("synthetic"), dict):
        values["synthetic"] = SyntheticConfig(**values["synthetic"])
    return DatasetConfig(**values)


def dataset_config_problems(cfg: DatasetConfig) -> list[str]:
    """What is wrong with a dataset config's values (the one place they are checked: the
    launcher's config check reports these too)."""
    unset = [
        key
        for key in ("name", "ori_w", "ori_h", "cut_height", "max_lanes")
        if getattr(cfg, key) in (None, "???")
    ]
    if unset:
        return [f"dataset config: {', '.join(unset)} not set"]
    problems = []
    if cfg.name not in DATASET_NAMES:
        problems.append(f"dataset.name must be one of {', '.join(DATASET_NAMES)}, got {cfg.name!r}")
    if cfg.augment_on not in AUGMENT_ON:
        problems.append(
            f"dataset.augment_on must be one of {', '.join(AUGMENT_ON)}, got {cfg.augment_on!r}"
        )
    if not 0 <= cfg.cut_height < cfg.ori_h:
        problems.append(f"cut_height {cfg.cut_height} must lie in [0, ori_h={cfg.ori_h})")
    if cfg.max_lanes < 1 or cfg.num_points < 2:
        problems.append("max_lanes must be >= 1 and num_points >= 2")
    try:
        validate_augment_config(cfg.augment)
    except ValueError as err:
        problems.append(str(err))
    return problems


def _validate_config(cfg: DatasetConfig) -> None:
    problems = dataset_config_problems(cfg)
    if problems:
        raise DatasetError("invalid dataset config: " + "; ".join(problems))


def _check_images_exist(
    samples: list[LaneSample], skip: bool, where: str
) -> tuple[list[LaneSample], list[str]]:
    """(samples whose image file exists, paths of the missing ones); raises unless ``skip``."""
    missing = [s for s in samples if not os.path.isfile(s.img_path)]
    if not missing:
        return samples, []
    examples = "; ".join(f"{s.img_path} (listed at {s.source})" for s in missing[:3])
    if not skip:
        raise DatasetError(
            f"{len(missing)} of {len(samples)} images of {where} do not exist, e.g. {examples} "
            "(set dataset.skip_unreadable_images=true to skip them)"
        )
    log.warning("%s: skipping %d missing image(s), e.g. %s", where, len(missing), examples)
    gone = {id(s) for s in missing}
    return [s for s in samples if id(s) not in gone], [s.img_path for s in missing]


def build_dataset(
    cfg: DatasetConfig | DictConfig,
    split: str,
    training: bool,
    seed: int = 0,
    targets_fn: TargetsFn | None = None,
) -> LaneDataset:
    """The dataset ``cfg.name`` ("tusimple", "culane" or "synthetic") for ``split``.

    Splits: tusimple and synthetic train/val/trainval/test; culane train/val/test and the category
    lists ("test_split/test1_crowd", "test1_crowd" or "crowd"). ``training`` enables
    augmentation; ``targets_fn`` builds the model's training targets of each sample (its
    plugin's ``training_targets``; None: items without targets). Synthetic data is generated
    into ``cfg.root`` on first use (a missing or empty root means
    ``<cache_dir>/synthetic/<config hash>``) and read as TuSimple. Everything is validated here:
    a bad config, root, list or label file, a missing image (unless ``skip_unreadable_images``)
    or an empty split raises DatasetError.
    """
    cfg = as_dataset_config(cfg)
    _validate_config(cfg)
    name = cfg.name
    root, samples = _read_split(cfg, split, training)
    where = f"{name} split {split!r} ({root})"
    if not samples:
        raise DatasetError(f"{where} is empty: its list/label files hold no samples")
    total = len(samples)
    samples, missing = _check_images_exist(samples, cfg.skip_unreadable_images, where)
    if not samples:
        raise DatasetError(f"{where}: none of its {total} images exist")
    if training:
        require_usable_lane(samples, cfg.ori_w, cfg.ori_h, cfg.cut_height, where)
    dataset = LaneDataset(samples, cfg, training, seed, name, split, root, targets_fn)
    dataset.skipped.extend(missing)
    if cfg.decoded_cache:
        dataset.attach_decoded_cache()
    return dataset


def _read_split(cfg: DatasetConfig, split: str, training: bool) -> tuple[Path, list[LaneSample]]:
    """(the dataset's root, the samples of ``split``) for ``cfg.name``."""
    root_value = _root_value(cfg)
    if cfg.name == "synthetic":
        return _read_synthetic(cfg, root_value, split)
    if cfg.name in GENERATED_FORMATS:
        return _read_generated_format(cfg, root_value, split)
    if not root_value:
        label = {"tusimple": "TuSimple", "culane": "CULane", "llamas": "LLAMAS"}.get(cfg.name)
        label = label or {"curvelanes": "CurveLanes"}.get(cfg.name)
        raise DatasetError(f"dataset.root is not set: point it at the {label or cfg.name} root")
    root = Path(root_value).expanduser().absolute()
    if cfg.name == "tusimple":
        return root, read_tusimple_split(root, split, (cfg.ori_w, cfg.ori_h))
    if cfg.name in ("llamas", "curvelanes", "custom"):
        return root, read_format_split(cfg.name, root, split, (cfg.ori_w, cfg.ori_h))
    samples = read_culane_split(root, split, (cfg.ori_w, cfg.ori_h))
    if cfg.filter_near_duplicates and training:
        samples = filter_near_duplicates(
            samples, root, split, root / resolve_split(split)[0], cfg.cache_dir
        )
    return root, samples


# Generated trees in an official layout: dataset.name -> (format, generator).
GENERATED_FORMATS = {
    "llamas_synthetic": ("llamas", generate_synthetic_llamas),
    "curvelanes_synthetic": ("curvelanes", generate_synthetic_curvelanes),
}


def _read_generated_format(
    cfg: DatasetConfig, root_value: str | None, split: str
) -> tuple[Path, list[LaneSample]]:
    """A synthetic tree in an official format (made on first use), read by that format's
    reader: the same code path as the real dataset."""
    name, generate = GENERATED_FORMATS[cfg.name]
    synth = cfg.synthetic
    counts = (synth.num_train, synth.num_val, synth.num_test)
    digest = hashlib.sha256(repr((name, counts, synth.seed)).encode()).hexdigest()[:12]
    default = cache_root(cfg.cache_dir) / cfg.name / f"v{FORMATS_GENERATOR}-{digest}"
    root = generate(root_value or default, *counts, seed=synth.seed)
    return root, read_format_split(name, root, split, (cfg.ori_w, cfg.ori_h))


def _read_synthetic(
    cfg: DatasetConfig, root_value: str | None, split: str
) -> tuple[Path, list[LaneSample]]:
    """The synthetic dataset, generated on first use, read as TuSimple."""
    if split not in SYNTHETIC_SPLITS:
        raise DatasetError(
            f"unknown synthetic split {split!r}: expected one of {', '.join(SYNTHETIC_SPLITS)}"
        )
    synth = cfg.synthetic
    if (synth.width, synth.height) != (cfg.ori_w, cfg.ori_h):
        raise DatasetError(
            f"dataset.synthetic is {synth.width}x{synth.height} but dataset.ori_w x ori_h is "
            f"{cfg.ori_w}x{cfg.ori_h}: set them equal (and scale cut_height with them)"
        )
    root = generate_synthetic_tusimple(
        root_value or default_synthetic_root(synth, cfg.cache_dir), synth
    )
    return root, read_tusimple_split(root, split, (cfg.ori_w, cfg.ori_h))


def _root_value(cfg: DatasetConfig) -> str | None:
    """cfg.root, or None when unset (empty, None, or an OmegaConf MISSING value)."""
    try:
        value = cfg.root
    except Exception:  # OmegaConf raises MissingMandatoryValue on access
        return None
    return None if value in (None, "", "???") else str(value)
