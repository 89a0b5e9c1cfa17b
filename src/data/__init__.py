"""Lane datasets: TuSimple, CULane, LLAMAS, CurveLanes, the user's own data in CULane's format
(``custom``) and generated synthetic trees (TuSimple format, and LLAMAS / CurveLanes in their
official layouts), with the SRLane per-sample pipeline (crop, augmentation, targets) and
batching.

Public API: ``build_dataset``, ``collate_lanes``, ``EpochSampler``,
``generate_synthetic_tusimple``, ``generate_synthetic_llamas``,
``generate_synthetic_curvelanes`` and ``DatasetError``; the training loop's side (uint8
hand-over, augmentation on the device): ``configure_training_input``, ``prepare_batch``,
``device_batches``. Readers: ``tusimple``, ``culane``, ``llamas``, ``curvelanes``, ``custom``
(``formats.read_format_split`` for the last three); whole-tree checks: ``check``,
``check_formats`` (scripts/check_dataset.py).
"""

from .collate import collate_lanes
from .dataset import LaneDataset, build_dataset
from .device_input import configure_training_input, device_batches, prepare_batch
from .errors import DatasetError
from .sampler import EpochSampler
from .synthetic import generate_synthetic_tusimple
from .synthetic_formats import generate_synthetic_curvelanes, generate_synthetic_llamas

__all__ = [
    "DatasetError",
    "EpochSampler",
    "LaneDataset",
    "build_dataset",
    "collate_lanes",
    "generate_synthetic_curvelanes",
    "generate_synthetic_llamas",
    "configure_training_input",
    "device_batches",
    "generate_synthetic_tusimple",
    "prepare_batch",
]
