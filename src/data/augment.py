"""The SRLane training augmentation list, drawn per sample and applied with cv2/numpy.

Order and parameters follow the reference (SRLane's CULane config, ``train_process``): resize
(p 1), horizontal flip (0.5), channel shuffle (0.1), brightness multiply/add (0.6), hue and
saturation add (0.7), one of motion blur / median blur / JPEG or coarse dropout (0.2), affine
translate/rotate/scale/shear-x (0.7), resize (p 1). Lists without the third blur choice
(``third_op=none``) or without shear (``shear_x=0``) are settings of the same steps. The
geometric steps act on lane points through one 3x3 matrix; the image goes through a cubic
resize, a flip and one bilinear warp (black border), as in the reference.

All randomness of a sample comes from one ``numpy.random.Generator`` in ``draw_augmentation``,
which always consumes the same values in the same order: a sample's draw depends only on the
generator's seed, never on which steps fired for other samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .config import AugmentConfig
from .geometry import affine_matrix, hflip_matrix

# The third choice of the blur step; none: one of the two blurs only.
THIRD_OPS = ("jpeg", "coarse_dropout", "none")

# Colour spaces with a brightness channel (imgaug's MultiplyAndAddToBrightness picks one per
# image): (RGB -> space, space -> RGB, brightness channel index).
BRIGHTNESS_SPACES = {
    "YCrCb": (cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB, 0),
    "HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, 2),
    "HLS": (cv2.COLOR_RGB2HLS, cv2.COLOR_HLS2RGB, 1),
    "Lab": (cv2.COLOR_RGB2Lab, cv2.COLOR_Lab2RGB, 0),
    "Luv": (cv2.COLOR_RGB2Luv, cv2.COLOR_Luv2RGB, 0),
    "YUV": (cv2.COLOR_RGB2YUV, cv2.COLOR_YUV2RGB, 0),
}
_SPACE_NAMES = tuple(BRIGHTNESS_SPACES)
_IDENTITY = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class AugmentDraw:
    """The random choices for one sample; None = the step did not fire."""

    hflip: bool
    channel_order: tuple[int, int, int] | None
    # (colour space, multiplier, addend, add before multiplying)
    brightness: tuple[str, float, float, bool] | None
    hue_saturation: int | None
    # ("motion_blur", kernel, angle_deg, direction) | ("median_blur", kernel)
    # | ("jpeg", quality) | ("coarse_dropout", drop_fraction, size_fraction, mask_seed)
    blur_or_noise: tuple | None
    # (translate_x_px, translate_y_px, rotate_deg, scale, shear_x_deg)
    affine: tuple[float, float, float, float, float] | None

    def as_dict(self) -> dict:
        """Plain-Python form (for sample metadata and tests)."""
        return asdict(self)


def validate_augment_config(cfg: AugmentConfig) -> None:
    """Reject parameter values the augmentation cannot apply (ValueError naming the field)."""
    for name in ("hflip_p", "channel_shuffle_p", "brightness_p", "hue_saturation_p", "blur_p"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value}")
    if not 0.0 <= cfg.affine_p <= 1.0:
        raise ValueError(f"augment.affine_p must be a probability in [0, 1], got {cfg.affine_p}")
    if cfg.third_op not in THIRD_OPS:
        raise ValueError(f"augment.third_op must be one of {THIRD_OPS}, got {cfg.third_op!r}")
    for name in (
        "brightness_mul",
        "brightness_add",
        "hue_saturation_add",
        "blur_kernel",
        "jpeg_quality",
        "scale",
        "dropout_fraction",
        "dropout_size",
    ):
        low, high = getattr(cfg, name)
        if low > high:
            raise ValueError(
                f"augment.{name} must be [low, high] with low <= high, got {low, high}"
            )
    if cfg.blur_kernel[0] < 1:
        raise ValueError(f"augment.blur_kernel must be >= 1, got {list(cfg.blur_kernel)}")
    if not 1 <= cfg.jpeg_quality[0] <= cfg.jpeg_quality[1] <= 100:
        raise ValueError(f"augment.jpeg_quality must lie in [1, 100], got {cfg.jpeg_quality}")
    if not 0 < cfg.dropout_size[0]:
        raise ValueError(f"augment.dropout_size must be > 0, got {list(cfg.dropout_size)}")


def _odd_kernels(low: int, high: int) -> list[int]:
    odd = [k for k in range(low, high + 1) if k % 2 == 1]
    return odd or [low | 1]


def draw_augmentation(
    rng: np.random.Generator, cfg: AugmentConfig, width: int, height: int
) -> AugmentDraw:
    """Draw every random choice for one sample of a width x height network input.

    Always draws the same number of values in the same order, whether or not a step fires.
    """
    gates = rng.random(6)
    order = tuple(int(c) for c in rng.permutation(3))
    space = _SPACE_NAMES[int(rng.integers(len(_SPACE_NAMES)))]
    mul = float(rng.uniform(*cfg.brightness_mul))
    add = float(rng.uniform(*cfg.brightness_add))
    add_first = bool(rng.random() < 0.5)
    hue_sat = int(rng.integers(cfg.hue_saturation_add[0], cfg.hue_saturation_add[1] + 1))
    which = int(rng.integers(2 if cfg.third_op == "none" else 3))
    motion_k = int(rng.integers(cfg.blur_kernel[0], cfg.blur_kernel[1] + 1))
    motion_angle = float(rng.uniform(0.0, 360.0))
    motion_direction = float(rng.uniform(-1.0, 1.0))
    median_choices = _odd_kernels(*cfg.blur_kernel)
    median_k = median_choices[int(rng.integers(len(median_choices)))]
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    drop_fraction = float(rng.uniform(*cfg.dropout_fraction))
    drop_size = float(rng.uniform(*cfg.dropout_size))
    mask_seed = int(rng.integers(2**31))
    affine = (
        float(rng.uniform(-cfg.translate, cfg.translate) * width),
        float(rng.uniform(-cfg.translate, cfg.translate) * height),
        float(rng.uniform(-cfg.rotate, cfg.rotate)),
        float(rng.uniform(*cfg.scale)),
        float(rng.uniform(-cfg.shear_x, cfg.shear_x)),
    )

    if which == 0:
        blur_or_noise: tuple = ("motion_blur", motion_k, motion_angle, motion_direction)
    elif which == 1:
        blur_or_noise = ("median_blur", median_k)
    elif cfg.third_op == "jpeg":
        blur_or_noise = ("jpeg", quality)
    else:
        blur_or_noise = ("coarse_dropout", drop_fraction, drop_size, mask_seed)
    return AugmentDraw(
        hflip=bool(gates[0] < cfg.hflip_p),
        channel_order=order if gates[1] < cfg.channel_shuffle_p else None,
        brightness=(space, mul, add, add_first) if gates[2] < cfg.brightness_p else None,
        hue_saturation=hue_sat if gates[3] < cfg.hue_saturation_p else None,
        blur_or_noise=blur_or_noise if gates[4] < cfg.blur_p else None,
        affine=affine if gates[5] < cfg.affine_p else None,
    )


def geometry_matrix(draw: AugmentDraw, width: int, height: int) -> np.ndarray:
    """The 3x3 matrix of the draw's flip and affine on a width x height image (continuous
    coordinates), applied after the crop-and-resize."""
    matrix = np.eye(3)
    if draw.hflip:
        matrix = hflip_matrix(width) @ matrix
    if draw.affine is not None:
        matrix = affine_matrix(width, height, *draw.affine) @ matrix
    return matrix


def _lut(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def brightness_lut(mul: float, add: float, add_first: bool) -> np.ndarray:
    """The 256-entry uint8 table of a brightness multiply-and-add (also handed to the device
    augmentation, src/data/device_augment.py, so both apply the same numbers)."""
    if add_first:
        return _lut(np.clip(_IDENTITY + add, 0, 255) * mul)
    return _lut(np.clip(_IDENTITY * mul, 0, 255) + add)


def hue_saturation_luts(value: int) -> tuple[np.ndarray, np.ndarray]:
    """(hue table, saturation table), uint8, of ``add_hue_saturation``: the hue shifted by
    ``value`` on a 0-255 scale around OpenCV's 0-179 hue circle, the saturation by ``value``."""
    hue_shift = int(value / 255.0 * 180.0)
    hue_lut = np.where(_IDENTITY < 180, (_IDENTITY + hue_shift) % 180, _IDENTITY).astype(np.uint8)
    return hue_lut, _lut(_IDENTITY + value)


def adjust_brightness(
    img: np.ndarray, space: str, mul: float, add: float, add_first: bool
) -> np.ndarray:
    """Multiply and add to the brightness channel of ``space`` (RGB uint8 in and out)."""
    to_space, to_rgb, channel = BRIGHTNESS_SPACES[space]
    lut = brightness_lut(mul, add, add_first)
    converted = cv2.cvtColor(img, to_space)
    planes = list(cv2.split(converted))
    planes[channel] = cv2.LUT(planes[channel], lut)
    return cv2.cvtColor(cv2.merge(planes), to_rgb)


def add_hue_saturation(img: np.ndarray, value: int) -> np.ndarray:
    """Add ``value`` to saturation and ``value`` (on a 0-255 hue scale) to the hue, wrapping
    around OpenCV's 0-179 hue circle (RGB uint8 in and out)."""
    hue_lut, sat_lut = hue_saturation_luts(value)
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_RGB2HSV))
    hsv = cv2.merge((cv2.LUT(hue, hue_lut), cv2.LUT(sat, sat_lut), val))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def motion_kernel(kernel: int, angle_deg: float, direction: float) -> np.ndarray | None:
    """The normalised float32 (kernel, kernel) weights of ``motion_blur`` (None: all zero, the
    image stays as it is)."""
    weights = np.zeros((kernel, kernel), dtype=np.float32)
    weights[:, kernel // 2] = np.clip(
        np.linspace(1.0 - direction, 1.0 + direction, kernel), 0, None
    )
    centre = ((kernel - 1) / 2.0, (kernel - 1) / 2.0)
    rotation = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    weights = cv2.warpAffine(weights, rotation, (kernel, kernel), flags=cv2.INTER_LINEAR)
    total = float(weights.sum())
    return weights / total if total > 0 else None


def motion_blur(img: np.ndarray, kernel: int, angle_deg: float, direction: float) -> np.ndarray:
    """Blur along a line of ``kernel`` pixels at ``angle_deg``; ``direction`` in [-1, 1] weights
    one end of the line more than the other."""
    weights = motion_kernel(kernel, angle_deg, direction)
    if weights is None:
        return img
    return cv2.filter2D(img, -1, weights, borderType=cv2.BORDER_REFLECT_101)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` and decode (RGB uint8 in and out)."""
    ok, buffer = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("cv2.imencode failed for the JPEG augmentation")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def dropout_grid(height: int, width: int, size: float) -> tuple[int, int]:
    """(rows, columns) of the coarse-dropout mask of a height x width image."""
    return max(1, round(height * size)), max(1, round(width * size))


def dropout_cells(height: int, width: int, fraction: float, size: float, seed: int) -> np.ndarray:
    """The coarse-dropout mask cells (uint8, 1 = dropped) before scaling up to the image."""
    grid = dropout_grid(height, width, size)
    return (np.random.default_rng(seed).random(grid) < fraction).astype(np.uint8)


def coarse_dropout(img: np.ndarray, fraction: float, size: float, seed: int) -> np.ndarray:
    """Set rectangles to black: a mask of about ``size`` x the image resolution, each cell
    dropped with probability ``fraction``, scaled up with nearest-neighbour."""
    height, width = img.shape[:2]
    cells = dropout_cells(height, width, fraction, size, seed)
    if not cells.any():
        return img
    mask = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = img.copy()
    out[mask] = 0
    return out


def flip_and_photometric(img: np.ndarray, draw: AugmentDraw) -> np.ndarray:
    """Every image step of a draw before the affine warp: the flip, then the photometric ones
    (RGB uint8)."""
    if draw.hflip:
        img = cv2.flip(img, 1)
    return apply_photometric(img, draw)


def apply_photometric(img: np.ndarray, draw: AugmentDraw) -> np.ndarray:
    """The colour, blur and noise steps of a draw, in reference order (RGB uint8)."""
    if draw.channel_order is not None:
        img = np.ascontiguousarray(img[:, :, list(draw.channel_order)])
    if draw.brightness is not None:
        img = adjust_brightness(img, *draw.brightness)
    if draw.hue_saturation is not None:
        img = add_hue_saturation(img, draw.hue_saturation)
    if draw.blur_or_noise is not None:
        op, *params = draw.blur_or_noise
        if op == "motion_blur":
            img = motion_blur(img, *params)
        elif op == "median_blur":
            img = cv2.medianBlur(img, params[0])
        elif op == "jpeg":
            img = jpeg_roundtrip(img, params[0])
        else:
            img = coarse_dropout(img, *params)
    return img
