"""Label values that parse but cannot be right, checked when a split is read (before training):
TuSimple rows out of order, lane points far outside the image, a training split in which no
lane can be learnt, an image labelled twice.

The limits come from the formats: TuSimple labels are x pixels of the 1280x720 image per row of
``h_samples``, rows listed top to bottom (160, 170, ..., 710), negative x = no point; CULane
labels are x y pixels of the 1640x590 image. Annotators draw some lanes past the border (the
pipeline cuts them at it), so a point may lie up to one image size outside; further out it is
not a pixel of the image (wrong units, a corrupt file) and the label line is named.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from src.metrics.file_checks import OUTSIDE_IMAGE_TOLERANCE

from .errors import DatasetError
from .samples import LaneSample

log = logging.getLogger(__name__)


def check_rows_increase(h_samples: Sequence[float], where: str) -> None:
    """TuSimple ``h_samples`` must increase strictly: the lanes' points are read in that order
    (a lane built from unsorted rows zigzags)."""
    rows = np.asarray(h_samples, dtype=np.float64)
    steps = np.nonzero(np.diff(rows) <= 0)[0]
    if len(steps):
        i = int(steps[0]) + 1
        raise DatasetError(
            f"{where}: h_samples must increase strictly (rows listed top to bottom, as in the "
            f"TuSimple format: 160, 170, ..., 710), but h_samples[{i}] = {rows[i]:g} follows "
            f"{rows[i - 1]:g}; sort the rows together with every lane's x values"
        )


def check_points_near_image(
    h_samples: Sequence[float],
    lanes_xs: Sequence[Sequence[float]],
    image_size: tuple[int, int],
    where: str,
) -> None:
    """Every row and every lane point (x >= 0) of a TuSimple label line within
    OUTSIDE_IMAGE_TOLERANCE image sizes of the (width, height) image."""
    width, height = image_size
    rows = np.asarray(h_samples, dtype=np.float64)
    margin_y = height * OUTSIDE_IMAGE_TOLERANCE
    far_rows = np.nonzero((rows < -margin_y) | (rows > height + margin_y))[0]
    if len(far_rows):
        raise DatasetError(
            f"{where}: h_samples[{far_rows[0]}] = {rows[far_rows[0]]:g} lies far outside the "
            f"{width}x{height} image (rows are y pixels of it; accepted: "
            f"{-margin_y:g} to {height + margin_y:g})"
        )
    limit = width * (1 + OUTSIDE_IMAGE_TOLERANCE)
    for index, xs in enumerate(lanes_xs):
        x = np.asarray(xs, dtype=np.float64)
        far = np.nonzero(x > limit)[0]
        if len(far):
            raise DatasetError(
                f"{where}: lane {index} has x = {x[far[0]]:g} at y = {rows[far[0]]:g}, far "
                f"outside the {width}x{height} image: TuSimple x values are pixels of it "
                f"(negative = no point), accepted up to {limit:g}; check the label's units"
            )


def usable(lane: np.ndarray, width: int, height: int, cut_height: int) -> bool:
    """A lane the targets can be built from: at least 2 points inside the image below the
    cut (the pipeline keeps the part of a lane inside the cropped image)."""
    x, y = lane[:, 0], lane[:, 1]
    inside = (x >= 0) & (x <= width) & (y >= cut_height) & (y <= height)
    return int(inside.sum()) >= 2


def require_usable_lane(
    samples: Sequence[LaneSample], width: int, height: int, cut_height: int, where: str
) -> None:
    """A training split must hold at least one usable lane: without one the model learns to
    predict no lane (TuSimple F1 0.667, Accuracy 0). Stops at the first usable lane, so a normal
    split costs one sample."""
    for sample in samples:
        _, train_lanes = sample.load_lanes()
        h, w = sample.ori_size if sample.ori_size is not None else (height, width)
        cut = sample.cut_height if sample.cut_height is not None else cut_height
        if any(usable(lane, w, h, cut) for lane in train_lanes):
            return
    raise DatasetError(
        f"{where}: no usable lane in its {len(samples)} samples: no lane has 2 points inside the "
        f"{width}x{height} image below cut_height={cut_height}, so training would only learn to "
        "predict no lane. Check the labels' coordinates (run scripts/check_dataset.py) and "
        "dataset.ori_w / ori_h / cut_height"
    )


def warn_repeated_images(samples: Sequence[LaneSample], where: str) -> None:
    """An image labelled more than once is trained on (or scored) as often: legal, but most
    likely two label files that overlap. Logged with the count and the first example."""
    first: dict[str, str] = {}
    repeats = []
    for sample in samples:
        if sample.img_name in first:
            repeats.append((sample, first[sample.img_name]))
        else:
            first[sample.img_name] = sample.source
    if repeats:
        sample, earlier = repeats[0]
        log.warning(
            "%s: %d image(s) labelled more than once (each label is used), e.g. %s at %s "
            "(first at %s)",
            where,
            len(repeats),
            sample.img_name,
            sample.source,
            earlier,
        )
