"""The training loop's side of the input pipeline: a batch as the workers hand it over (uint8
images, and with ``dataset.augment_on=device`` the drawn parameters of the image steps) becomes
the float model input on the training device.

- ``configure_training_input``: picks where the image steps run (``dataset.augment_on``, logged)
  and sets the training dataset's hand-over; called once, before the loader starts.
- ``prepare_batch``: one batch -> the device, augmented (src/data/device_augment.py), float32
  in [0, 1] exactly as ``input_array`` (src/data/pipeline.py) computes it.
- ``device_batches``: ``prepare_batch`` over a loader; on CUDA each batch's copy is issued on
  a side stream one batch ahead, so it overlaps the current step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor

from .dataset import LaneDataset
from .device_augment import augment_batch

log = logging.getLogger(__name__)

# dataset.augment_on=auto off CUDA. scripts/bench_data.py, Intel Xeon (2 cores, AMX), 800x320
# CULane-like JPEGs: the worker mode delivers more samples/s end to end (workers plus the main
# process's device augmentation) at 1 and 2 workers; the device augmentation also takes the
# main process's CPU time from the training step.
CPU_AUGMENT_ON = "worker"


def choose_augment_on(setting: str, device: torch.device) -> str:
    """``dataset.augment_on`` resolved: worker or device ("auto": device on CUDA, else
    CPU_AUGMENT_ON)."""
    if setting in ("worker", "device"):
        return setting
    if setting != "auto":
        raise ValueError(f"dataset.augment_on must be auto, worker or device, got {setting!r}")
    return "device" if torch.device(device).type == "cuda" else CPU_AUGMENT_ON


def configure_training_input(dataset: LaneDataset, setting: str, device: torch.device) -> str:
    """Set the training dataset's uint8 hand-over for ``dataset.augment_on=setting`` when
    training on ``device``; logs and returns the choice (worker or device)."""
    chosen = choose_augment_on(setting, device)
    dataset.set_handover(chosen)
    where = "in the DataLoader workers" if chosen == "worker" else f"on the device ({device})"
    why = "" if setting == chosen else f" (auto, training on {torch.device(device).type})"
    log.info("dataset.augment_on=%s: image augmentation %s%s", chosen, where, why)
    return chosen


def prepare_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The batch on ``device`` with "img" the float32 (B, 3, H, W) model input in [0, 1]: uint8
    images are augmented (when the batch carries "augment") and divided by 255 there, bit for
    bit what the worker's float conversion gives; a float batch only moves. "augment" is
    consumed; "meta" stays on the CPU."""
    device = torch.device(device)
    out = {key: _to_device(value, device) for key, value in batch.items()}
    params = out.pop("augment", None)
    images = out["img"]
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W)
        if params is not None:
            images = augment_batch(images.contiguous(), params)
        # One pass converts and transposes, one divides: x / 255 in float32, as input_array.
        floats = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        out["img"] = floats.copy_(images).div_(255.0)
    return out


def _to_device(value: Any, device: torch.device) -> Any:
    """Tensors (also in lists) to ``device``; "augment"'s parameters stay on the CPU (the
    device augmentation reads which samples a step applies to there, without a sync)."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, list) and value and isinstance(value[0], Tensor):
        return [_to_device(v, device) for v in value]
    return value


def device_batches(loader: Iterable[dict[str, Any]], device: torch.device | str) -> Iterator[dict]:
    """``prepare_batch`` of every batch of ``loader``. On CUDA the tensors of the next batch are
    copied on a side stream while the caller works on the current one (give this a loader that
    does not move batches itself: Fabric's ``setup_dataloaders(move_to_device=False)``)."""
    device = torch.device(device)
    if device.type != "cuda":
        for batch in loader:
            yield prepare_batch(batch, device)
        return
    stream = torch.cuda.Stream(device)
    batches = iter(loader)
    pending = _copy_ahead(next(batches, None), device, stream)
    while pending is not None:
        current = torch.cuda.current_stream(device)
        current.wait_stream(stream)
        for tensor in _tensors(pending):
            tensor.record_stream(current)  # freed only after the step's use of it
        batch = pending
        pending = _copy_ahead(next(batches, None), device, stream)
        yield prepare_batch(batch, device)


def _copy_ahead(batch: dict | None, device: torch.device, stream: Any) -> dict | None:
    if batch is None:
        return None
    with torch.cuda.stream(stream):
        return {key: _to_device(value, device) for key, value in batch.items()}


def _tensors(batch: dict[str, Any]) -> Iterator[Tensor]:
    for value in batch.values():
        if isinstance(value, Tensor) and value.is_cuda:
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, Tensor) and v.is_cuda)
