"""Per-sample processing: image bytes -> cropped, augmented network input + lanes + targets.

The targets are the model's (its plugin's ``training_targets``, src/models/plugin.py): the data
layer calls the function it is given and knows no model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .augment import AugmentDraw, draw_augmentation, flip_and_photometric, geometry_matrix
from .config import AugmentConfig, DatasetConfig
from .device_draws import device_params, needs_worker_photometric
from .geometry import (
    affine_matrix,
    clip_polyline,
    crop_resize_matrix,
    opencv_matrix,
    transform_points,
)

# (lanes in input pixels, img_w, img_h, num_points, max_lanes) -> named target arrays.
TargetsFn = Callable[..., Mapping[str, np.ndarray | Sequence[np.ndarray]]]


class ImageReadError(Exception):
    """An image file that cannot be read or decoded (the dataset names it or skips it)."""


# JPEG markers: start of image, start of scan, end of image.
_JPEG_SOI, _JPEG_SOS, _JPEG_EOI = b"\xff\xd8\xff", b"\xff\xda", b"\xff\xd9"


def jpeg_is_truncated(data: bytes) -> bool:
    """JPEG data whose last scan has no end-of-image marker after it: the file's tail is
    missing. OpenCV 4.x decodes such data partly (the lost rows grey) without an error; inside
    a scan 0xFF is always followed by 0x00 or a restart marker, so 0xFFD9 is the marker itself,
    and the last one must come after the last start-of-scan (an EXIF thumbnail's comes before
    it). Bytes appended after the marker are allowed."""
    if not data.startswith(_JPEG_SOI):
        return False
    end = data.rfind(_JPEG_EOI)
    return end < 0 or data.find(_JPEG_SOS, end) >= 0


def read_image(path: str) -> np.ndarray:
    """Decode an image file to BGR uint8 (H, W, 3); ImageReadError names the path and says why
    it failed: missing or unreadable, empty (0 bytes), a JPEG whose end is missing (truncated:
    ``jpeg_is_truncated``), or not a decodable image (garbage)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ImageReadError(f"cannot read image {path}: {reason}") from None
    if not data:
        raise ImageReadError(f"cannot decode image {path}: the file is empty (0 bytes)")
    if jpeg_is_truncated(data):
        raise ImageReadError(
            f"cannot decode image {path} ({len(data)} bytes): a truncated JPEG (no end-of-image "
            "marker after its last scan: an interrupted copy or download?)"
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as err:  # OpenCV asserts on some malformed headers instead of failing
        message = str(err).strip().splitlines()[-1] if str(err).strip() else "OpenCV error"
        raise ImageReadError(
            f"cannot decode image {path} ({len(data)} bytes): not a valid image ({message})"
        ) from None
    if image is None or image.size == 0:
        raise ImageReadError(f"cannot decode image {path} ({len(data)} bytes): not a valid image")
    return image


def crop_and_resize(image_bgr: np.ndarray, cut_height: int, img_w: int, img_h: int) -> np.ndarray:
    """The network's view of an image: rows from ``cut_height`` down, resized to img_w x img_h
    (cubic, as imgaug's Resize in the reference), as RGB uint8 (img_h, img_w, 3)."""
    resized = cv2.resize(image_bgr[cut_height:], (img_w, img_h), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)


def input_array(image_rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the model input of one image: float32 (3, H, W) in [0, 1]."""
    out = np.empty((3, *image_rgb.shape[:2]), dtype=np.float32)
    for channel, plane in enumerate(cv2.split(image_rgb)):  # faster than a strided divide
        np.divide(plane, np.float32(255.0), out=out[channel])
    return out


@dataclass(frozen=True)
class Processed:
    """One processed sample: RGB uint8 input image, its lanes (input pixels), targets."""

    image: np.ndarray  # (img_h, img_w, 3) uint8 RGB
    lanes: list[np.ndarray]  # lanes after geometry and clipping, (N, 2) in input pixels
    targets: Mapping[str, np.ndarray | Sequence[np.ndarray]]  # the model's, by name (or {})
    draw: AugmentDraw | None  # the augmentation applied (None: evaluation)
    # augment_on=device: the image steps left to the device (src/data/device_draws.py)
    device_params: dict[str, np.ndarray] | None = None


class TargetError(Exception):
    """The targets of an augmented sample could not be built (the draw is retried)."""


class LanePipeline:
    """Crop at cut_height, resize to img_w x img_h, augment image and lanes (training), build
    the model's targets with ``targets_fn`` (None: no targets, e.g. evaluation)."""

    def __init__(
        self, cfg: DatasetConfig, training: bool, targets_fn: TargetsFn | None = None
    ) -> None:
        self.targets_fn = targets_fn
        self.img_w, self.img_h = int(cfg.img_w), int(cfg.img_h)
        self.cut_height = int(cfg.cut_height)
        self.num_points = int(cfg.num_points)
        self.max_lanes = int(cfg.max_lanes)
        self.augment: AugmentConfig | None = (
            cfg.augment if training and cfg.augment.enabled else None
        )

    def draw(self, rng: np.random.Generator) -> AugmentDraw | None:
        """The augmentation of one sample (None when not augmenting)."""
        if self.augment is None:
            return None
        return draw_augmentation(rng, self.augment, self.img_w, self.img_h)

    def matrix(
        self, src_w: int, src_h: int, draw: AugmentDraw | None, cut_height: int | None = None
    ) -> np.ndarray:
        """3x3 map from original-image to input-image coordinates: crop (at ``cut_height``,
        default the config's), resize and the draw's flip and affine."""
        cut = self.cut_height if cut_height is None else cut_height
        matrix = crop_resize_matrix(src_w, src_h, cut, self.img_w, self.img_h)
        if draw is None:
            return matrix
        return geometry_matrix(draw, self.img_w, self.img_h) @ matrix

    def network_view(self, image_bgr: np.ndarray, cut_height: int | None = None) -> np.ndarray:
        """The crop + resize of a decoded BGR image: RGB uint8 (img_h, img_w, 3), the first step
        of every sample and what the decoded cache stores (src/data/decoded_cache.py)."""
        cut = self.cut_height if cut_height is None else cut_height
        return crop_and_resize(image_bgr, cut, self.img_w, self.img_h)

    def augment_image(self, image: np.ndarray, draw: AugmentDraw | None) -> np.ndarray:
        """The draw's image steps on a network view (RGB uint8): flip, colour, blur / noise,
        affine warp with a black border, as the reference orders them."""
        if draw is None:
            return image
        image = flip_and_photometric(image, draw)
        if draw.affine is not None:
            affine = affine_matrix(self.img_w, self.img_h, *draw.affine)
            image = cv2.warpAffine(
                image,
                opencv_matrix(affine),
                (self.img_w, self.img_h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=(0, 0, 0),
            )
        return image

    def transform_image(self, image_bgr: np.ndarray, draw: AugmentDraw | None) -> np.ndarray:
        """Crop, resize and augment a BGR image to the RGB uint8 network input."""
        return self.augment_image(self.network_view(image_bgr), draw)

    def transform_lanes(self, lanes: Sequence[np.ndarray], matrix: np.ndarray) -> list[np.ndarray]:
        """Map lanes with ``matrix`` and cut them at the input-image border."""
        out = []
        for lane in lanes:
            out.extend(clip_polyline(transform_points(lane, matrix), self.img_w, self.img_h))
        return out

    def targets(self, lanes: Sequence[np.ndarray]) -> Mapping[str, Any]:
        """The model's targets; TargetError when they cannot be built or are not finite."""
        if self.targets_fn is None:
            return {}
        try:
            targets = self.targets_fn(
                lanes, self.img_w, self.img_h, self.num_points, self.max_lanes
            )
        except Exception as err:  # scipy raises several types on degenerate lanes
            raise TargetError(f"{type(err).__name__}: {err}") from err
        arrays = [a for v in targets.values() for a in (v if isinstance(v, list) else [v])]
        if not all(np.isfinite(a).all() for a in arrays):
            raise TargetError("non-finite target values")
        return targets

    def process(
        self, image_bgr: np.ndarray, lanes: Sequence[np.ndarray], draw: AugmentDraw | None
    ) -> Processed:
        """Run one draw on one decoded BGR image; TargetError if its targets fail."""
        src_h, src_w = image_bgr.shape[:2]
        return self.process_view(self.network_view(image_bgr), (src_w, src_h), lanes, draw)

    def process_view(
        self,
        view: np.ndarray,
        src_size: tuple[int, int],
        lanes: Sequence[np.ndarray],
        draw: AugmentDraw | None,
        image_steps_on: str = "worker",
        cut_height: int | None = None,
    ) -> Processed:
        """Run one draw on a network view of a src_size = (w, h) image; TargetError if its
        targets fail (checked before the image is augmented, so a retry costs little).

        ``image_steps_on="device"``: the image keeps to the view, except for the samples whose
        draw has a step without a device form (``needs_worker_photometric``), and the result carries
        the parameters the device applies (src/data/device_draws.py). ``cut_height``: the
        view's crop, when it is not the config's (CurveLanes crops each image size its own way).
        """
        new_lanes = self.transform_lanes(lanes, self.matrix(*src_size, draw, cut_height))
        targets = self.targets(new_lanes)
        if image_steps_on == "worker" or draw is None:
            return Processed(self.augment_image(view, draw), new_lanes, targets, draw)
        if needs_worker_photometric(draw):
            view = flip_and_photometric(view, draw)
        params = device_params(draw, self.img_w, self.img_h, self.augment)
        return Processed(view, new_lanes, targets, draw, params)
