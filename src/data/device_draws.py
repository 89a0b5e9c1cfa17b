"""What a DataLoader worker hands to the device augmentation (``dataset.augment_on=device``):
each sample's draw (the same ``AugmentDraw``, from the same generator stream, as the worker
mode) turned into fixed-size arrays that collate stacks into one batch of parameters.

The tables and kernels are computed here with the worker mode's own functions
(src/data/augment.py), so both modes apply the same numbers; src/data/device_augment.py applies
them to the whole batch. A step without a faithful device form stays in the worker for the
samples that drew it: the JPEG round trip (no libjpeg encoder on the device, and the CPU torch
build has none), and with it the steps that come before it (flip, channel shuffle, brightness,
hue / saturation); the device then applies only that sample's affine warp.
"""

from __future__ import annotations

import numpy as np

from src.data.config import AugmentConfig

from .augment import (
    BRIGHTNESS_SPACES,
    AugmentDraw,
    brightness_lut,
    dropout_cells,
    dropout_grid,
    hue_saturation_luts,
    motion_kernel,
)
from .geometry import affine_matrix, opencv_matrix

# Blur / noise steps without a device form: applied in the worker (see the module docstring).
WORKER_ONLY_OPS = ("jpeg",)
# The "filter" code of a sample: which blur / noise step the device applies.
NO_FILTER, MOTION_BLUR, MEDIAN_BLUR, COARSE_DROPOUT = 0, 1, 2, 3
FILTER_CODES = {"motion_blur": MOTION_BLUR, "median_blur": MEDIAN_BLUR}
FILTER_CODES["coarse_dropout"] = COARSE_DROPOUT
SPACE_NAMES = tuple(BRIGHTNESS_SPACES)


def needs_worker_photometric(draw: AugmentDraw) -> bool:
    """Whether the worker applies this draw's steps before the warp (it drew a worker-only
    step, which must see the flipped, colour-changed image, as in the worker mode)."""
    return draw.blur_or_noise is not None and draw.blur_or_noise[0] in WORKER_ONLY_OPS


def motion_slots(cfg: AugmentConfig) -> int:
    """Side of the odd square every motion-blur kernel of ``cfg`` fits in, centred."""
    return 2 * (max(int(cfg.blur_kernel[1]), 1) // 2) + 1


def dropout_slots(cfg: AugmentConfig, width: int, height: int) -> tuple[int, int]:
    """(rows, columns) every coarse-dropout mask of ``cfg`` fits in."""
    return dropout_grid(height, width, float(cfg.dropout_size[1]))


def blank_params(cfg: AugmentConfig, width: int, height: int) -> dict[str, np.ndarray]:
    """The parameters of a sample with no image step on the device."""
    kernel = motion_slots(cfg)
    return {
        "hflip": np.array(False),
        "channel_order": np.arange(3, dtype=np.int64),
        "brightness_space": np.array(-1, dtype=np.int64),  # index into SPACE_NAMES
        "brightness_lut": np.arange(256, dtype=np.uint8),
        "hue_saturation": np.array(False),
        "hue_lut": np.arange(256, dtype=np.uint8),
        "sat_lut": np.arange(256, dtype=np.uint8),
        "filter": np.array(NO_FILTER, dtype=np.int64),
        "median_kernel": np.array(1, dtype=np.int64),
        "motion_kernel": np.zeros((kernel, kernel), dtype=np.float32),
        "dropout_cells": np.zeros(dropout_slots(cfg, width, height), dtype=np.uint8),
        "dropout_grid": np.ones(2, dtype=np.int64),  # (rows, columns) in use
        "affine": np.array(False),
        "warp": np.zeros((2, 3), dtype=np.float64),  # output pixel -> input pixel (centres)
    }


def device_params(
    draw: AugmentDraw, width: int, height: int, cfg: AugmentConfig
) -> dict[str, np.ndarray]:
    """The image steps of ``draw`` that the device applies to a width x height view."""
    params = blank_params(cfg, width, height)
    if not needs_worker_photometric(draw):
        _photometric_params(params, draw, width, height)
    if draw.affine is not None:
        forward = np.vstack((opencv_matrix(affine_matrix(width, height, *draw.affine)), [0, 0, 1]))
        params["affine"] = np.array(True)
        params["warp"] = np.linalg.inv(forward)[:2]  # cv2.warpAffine inverts it too
    return params


def _photometric_params(
    params: dict[str, np.ndarray], draw: AugmentDraw, width: int, height: int
) -> None:
    params["hflip"] = np.array(draw.hflip)
    if draw.channel_order is not None:
        params["channel_order"] = np.array(draw.channel_order, dtype=np.int64)
    if draw.brightness is not None:
        space, mul, add, add_first = draw.brightness
        params["brightness_space"] = np.array(SPACE_NAMES.index(space), dtype=np.int64)
        params["brightness_lut"] = brightness_lut(mul, add, add_first)
    if draw.hue_saturation is not None:
        params["hue_saturation"] = np.array(True)
        params["hue_lut"], params["sat_lut"] = hue_saturation_luts(draw.hue_saturation)
    if draw.blur_or_noise is None:
        return
    op, *values = draw.blur_or_noise
    if op == "motion_blur":
        weights = motion_kernel(*values)
        if weights is None:  # all-zero kernel: the worker mode leaves the image as it is
            return
        slots = params["motion_kernel"]
        # Same anchor as cv2.filter2D (kernel // 2) at the centre of the padded square.
        start = slots.shape[0] // 2 - weights.shape[0] // 2
        slots[start : start + weights.shape[0], start : start + weights.shape[1]] = weights
    elif op == "median_blur":
        params["median_kernel"] = np.array(values[0], dtype=np.int64)
    elif op == "coarse_dropout":
        cells = dropout_cells(height, width, *values)
        params["dropout_cells"][: cells.shape[0], : cells.shape[1]] = cells
        params["dropout_grid"] = np.array(cells.shape, dtype=np.int64)
    else:
        raise ValueError(f"no device form for the augmentation step {op!r}")
    params["filter"] = np.array(FILTER_CODES[op], dtype=np.int64)
