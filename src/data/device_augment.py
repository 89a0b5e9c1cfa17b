"""The image steps of the training augmentation on a whole batch on the device
(``dataset.augment_on=device``), from the parameters the workers drew (src/data/device_draws.py).

Plain torch rather than a library: the same code runs on CUDA and on the CPU build, where the
tests compare it with the worker mode's OpenCV (tests/data/test_device_augment.py), and no new
dependency. The libraries do not match OpenCV (shared/docs/input-pipeline.md): kornia 0.9's
median blur pads with zeros, its motion blur shares one kernel size per batch and its HSV is
not OpenCV's uint8 HSV; DALI is CUDA-only, its HSV a linear approximation and its warp puts
(0, 0) at a pixel corner. Every step ends in uint8, rounded
half to even and clamped as OpenCV's saturate_cast, so that rounding errors do not accumulate
from step to step. How each step matches OpenCV:

- flip, channel shuffle, coarse dropout (cv2.resize INTER_NEAREST's index rule): exact;
- brightness (six colour spaces) and hue / saturation: the uint8 colour conversions as lookup
  tables built with OpenCV itself (all 2^24 colours, 48 MiB per direction and space, built once
  per process on first use), so exact too;
- median blur: replicate border (OpenCV's), median of the k x k window: exact;
- motion blur: float32 correlation with a reflect-101 border (cv2.filter2D's default), rounded;
  may differ by 1 where the float sums round differently;
- affine warp: bilinear ``grid_sample`` at pixel centres (align_corners=True) with a zero
  border; OpenCV quantises coordinates to 1/32 pixel and weights to fixed point, so the two
  differ by a few hundredths of a grey level on average, a few levels at sharp edges.

Which samples a step applies to is read from the parameters on the CPU (no device sync).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import BRIGHTNESS_SPACES
from .device_draws import COARSE_DROPOUT, MEDIAN_BLUR, MOTION_BLUR, SPACE_NAMES

_TABLES: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
_TABLES_LOCK = threading.Lock()


def augment_batch(images: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Apply the drawn image steps to ``images`` (B, 3, H, W) uint8 on the device, in the worker
    mode's order: flip, channel shuffle, brightness, hue / saturation, blur or noise, affine
    warp. ``params``: the collated output of ``device_params``, on the CPU."""
    images = flip(images, params["hflip"])
    images = shuffle_channels(images, params["channel_order"])
    images = adjust_brightness(images, params["brightness_space"], params["brightness_lut"])
    images = add_hue_saturation(
        images, params["hue_saturation"], params["hue_lut"], params["sat_lut"]
    )
    images = blur_or_noise(images, params)
    return warp_affine(images, params["affine"], params["warp"])


def _where(flags: Tensor) -> Tensor:
    return torch.nonzero(flags.reshape(-1), as_tuple=False).reshape(-1)


def _to(device: torch.device, tensor: Tensor) -> Tensor:
    return tensor.to(device, non_blocking=True)


def _to_uint8(values: Tensor) -> Tensor:
    """OpenCV's saturate_cast<uchar> of float results: round half to even, clamp."""
    return values.round_().clamp_(0, 255).to(torch.uint8)


def flip(images: Tensor, hflip: Tensor) -> Tensor:
    rows = _where(hflip)
    if len(rows):
        index = _to(images.device, rows)
        images[index] = images[index].flip(-1)
    return images


def shuffle_channels(images: Tensor, order: Tensor) -> Tensor:
    rows = _where((order != torch.arange(3)).any(dim=1))
    if len(rows):
        index = _to(images.device, rows)
        channels = _to(images.device, order[rows])[:, :, None, None].expand(
            -1, -1, *images.shape[2:]
        )
        images[index] = torch.gather(images[index], 1, channels)
    return images


def colour_tables(space: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """(RGB -> space, space -> RGB) of OpenCV's uint8 conversions, each (2^24, 3) uint8 indexed
    by c0 * 65536 + c1 * 256 + c2; built once per process and device."""
    key = (space, str(device))
    with _TABLES_LOCK:
        if key not in _TABLES:
            to_space, to_rgb, _ = BRIGHTNESS_SPACES[space]
            _TABLES[key] = (
                torch.from_numpy(_all_colours_through(to_space)).to(device),
                torch.from_numpy(_all_colours_through(to_rgb)).to(device),
            )
        return _TABLES[key]


def _all_colours_through(code: int) -> np.ndarray:
    values = np.arange(256, dtype=np.uint8)
    colours = np.empty((256, 256, 256, 3), dtype=np.uint8)  # colour c0 * 65536 + c1 * 256 + c2
    colours[..., 0] = values[:, None, None]
    colours[..., 1] = values[None, :, None]
    colours[..., 2] = values
    # One OpenCV thread: its thread pool, once started in this process, can deadlock the
    # DataLoader workers forked after it (see src/main.py's int8_calibration).
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        out = cv2.cvtColor(colours.reshape(4096, 4096, 3), code)
    finally:
        cv2.setNumThreads(threads)
    return np.ascontiguousarray(out.reshape(-1, 3))


def _through_table(images: Tensor, table: Tensor) -> Tensor:
    """Each pixel's three channels looked up in a (2^24, 3) table; (N, 3, H, W) uint8."""
    wide = images.to(torch.int32)
    flat = (wide[:, 0] << 16) | (wide[:, 1] << 8) | wide[:, 2]
    return table[flat.reshape(-1).long()].reshape(*flat.shape, 3).permute(0, 3, 1, 2)


def _apply_lut(plane: Tensor, luts: Tensor) -> Tensor:
    """plane (N, H, W) uint8 through one 256-entry table per sample, luts (N, 256) uint8."""
    flat = plane.reshape(len(plane), -1).long()
    return torch.gather(luts, 1, flat).reshape(plane.shape)


def adjust_brightness(images: Tensor, space_index: Tensor, luts: Tensor) -> Tensor:
    """Brightness channel of each sample's colour space through its table (``adjust_brightness``
    of src/data/augment.py)."""
    for code, space in enumerate(SPACE_NAMES):
        rows = _where(space_index == code)
        if not len(rows):
            continue
        forward, inverse = colour_tables(space, images.device)
        index = _to(images.device, rows)
        converted = _through_table(images[index], forward).contiguous()
        channel = BRIGHTNESS_SPACES[space][2]
        converted[:, channel] = _apply_lut(converted[:, channel], _to(images.device, luts[rows]))
        images[index] = _through_table(converted, inverse)
    return images


def add_hue_saturation(
    images: Tensor, selected: Tensor, hue_luts: Tensor, sat_luts: Tensor
) -> Tensor:
    """Hue and saturation through each sample's tables in OpenCV's uint8 HSV."""
    rows = _where(selected)
    if not len(rows):
        return images
    forward, inverse = colour_tables("HSV", images.device)
    index = _to(images.device, rows)
    hsv = _through_table(images[index], forward).contiguous()
    hsv[:, 0] = _apply_lut(hsv[:, 0], _to(images.device, hue_luts[rows]))
    hsv[:, 1] = _apply_lut(hsv[:, 1], _to(images.device, sat_luts[rows]))
    images[index] = _through_table(hsv, inverse)
    return images


def blur_or_noise(images: Tensor, params: dict[str, Tensor]) -> Tensor:
    """Motion blur, median blur or coarse dropout, each on the samples that drew it."""
    rows = _where(params["filter"] == MOTION_BLUR)
    if len(rows):
        index = _to(images.device, rows)
        images[index] = motion_blur(
            images[index], _to(images.device, params["motion_kernel"][rows])
        )
    kernels = params["median_kernel"]
    for size in sorted(set(kernels[params["filter"] == MEDIAN_BLUR].tolist())):
        rows = _where((params["filter"] == MEDIAN_BLUR) & (kernels == size))
        index = _to(images.device, rows)
        images[index] = median_blur(images[index], int(size))
    rows = _where(params["filter"] == COARSE_DROPOUT)
    if len(rows):
        index = _to(images.device, rows)
        cells = _to(images.device, params["dropout_cells"][rows])
        images[index] = coarse_dropout(images[index], cells, params["dropout_grid"][rows])
    return images


def motion_blur(images: Tensor, kernels: Tensor) -> Tensor:
    """Each image correlated with its own (K, K) kernel (K odd, anchor at the centre), border
    reflect-101, as one grouped convolution."""
    count, channels, height, width = images.shape
    radius = kernels.shape[-1] // 2
    padded = F.pad(
        images.float().reshape(1, count * channels, height, width), (radius,) * 4, mode="reflect"
    )
    weight = kernels.float().repeat_interleave(channels, dim=0)[:, None]
    cudnn = torch.backends.cudnn
    # Full float32 sums (TF32 would round the weights to 10 bits); the other settings kept.
    with cudnn.flags(
        cudnn.enabled, cudnn.benchmark, deterministic=cudnn.deterministic, allow_tf32=False
    ):
        out = F.conv2d(padded, weight, groups=count * channels)
    return _to_uint8(out.reshape(count, channels, height, width))


def median_blur(images: Tensor, size: int) -> Tensor:
    """Median of each size x size window with a replicated border (cv2.medianBlur)."""
    if size <= 1:
        return images
    radius = size // 2
    height, width = images.shape[2:]
    rows = torch.arange(-radius, height + radius, device=images.device).clamp_(0, height - 1)
    cols = torch.arange(-radius, width + radius, device=images.device).clamp_(0, width - 1)
    padded = images[:, :, rows][:, :, :, cols]
    windows = [
        padded[:, :, dy : dy + height, dx : dx + width] for dy in range(size) for dx in range(size)
    ]
    return torch.stack(windows, dim=-1).median(dim=-1).values


def coarse_dropout(images: Tensor, cells: Tensor, grids: Tensor) -> Tensor:
    """Black out the pixels whose mask cell is set; the (rows, columns) mask of each sample is
    scaled up as cv2.resize INTER_NEAREST does (source index floor(x * src / dst))."""
    height, width = images.shape[2:]
    device = images.device
    grids = grids.to(torch.float64)
    ys = torch.arange(height, dtype=torch.float64)
    xs = torch.arange(width, dtype=torch.float64)
    # OpenCV: ifx = 1 / (dst / src) in double, index = floor(x * ifx), at most src - 1.
    row_of = torch.floor(ys[None] * (1.0 / (height / grids[:, :1])))
    col_of = torch.floor(xs[None] * (1.0 / (width / grids[:, 1:])))
    row_of = torch.minimum(row_of, grids[:, :1] - 1).long()
    col_of = torch.minimum(col_of, grids[:, 1:] - 1).long()
    samples = torch.arange(len(cells))[:, None, None]
    mask = cells[
        _to(device, samples), _to(device, row_of)[:, :, None], _to(device, col_of)[:, None]
    ]
    return images.masked_fill(mask.bool()[:, None], 0)


def warp_affine(images: Tensor, selected: Tensor, warps: Tensor) -> Tensor:
    """Bilinear warp of the selected samples; ``warps`` (B, 2, 3) maps output pixel centres to
    input pixel centres (the inverse of the matrix given to cv2.warpAffine); zero border."""
    rows = _where(selected)
    if not len(rows):
        return images
    height, width = images.shape[2:]
    device = images.device
    matrices = _to(device, warps[rows].to(torch.float32))
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    m = matrices[:, :, :, None, None]  # elementwise: no TF32 matmul on CUDA
    source_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]  # (N, H, W) input pixels
    source_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    # align_corners=True: normalised -1 and 1 are the centres of the first and last pixels.
    grid = torch.stack((source_x * (2.0 / (width - 1)), source_y * (2.0 / (height - 1))), -1) - 1.0
    index = _to(device, rows)
    out = F.grid_sample(
        images[index].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )
    images[index] = _to_uint8(out)
    return images
