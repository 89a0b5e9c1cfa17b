"""Lane datasets: TuSimple, CULane and a generated TuSimple-format synthetic dataset, with the
SRLane per-sample pipeline (crop, augmentation, targets) and batching.

Public API: ``build_dataset``, ``collate_lanes``, ``EpochSampler``,
``generate_synthetic_tusimple`` and ``DatasetError``; the training loop's side (uint8 hand-over,
augmentation on the device): ``configure_training_input``, ``prepare_batch``,
``device_batches``.
"""

from .collate import collate_lanes
from .dataset import LaneDataset, build_dataset
from .device_input import configure_training_input, device_batches, prepare_batch
from .errors import DatasetError
from .sampler import EpochSampler
from .synthetic import generate_synthetic_tusimple

__all__ = [
    "DatasetError",
    "EpochSampler",
    "LaneDataset",
    "build_dataset",
    "collate_lanes",
    "configure_training_input",
    "device_batches",
    "generate_synthetic_tusimple",
    "prepare_batch",
]
