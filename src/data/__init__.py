"""Lane datasets: TuSimple, CULane and a generated TuSimple-format synthetic dataset, with the
SRLane per-sample pipeline (crop, augmentation, targets) and batching.

Public API: ``build_dataset``, ``collate_lanes``, ``EpochSampler``,
``generate_synthetic_tusimple`` and ``DatasetError``.
"""

from .collate import collate_lanes
from .dataset import LaneDataset, build_dataset
from .errors import DatasetError
from .sampler import EpochSampler
from .synthetic import generate_synthetic_tusimple

__all__ = [
    "DatasetError",
    "EpochSampler",
    "LaneDataset",
    "build_dataset",
    "collate_lanes",
    "generate_synthetic_tusimple",
]
