"""Lane masks drawn on small canvases, and their IoU.

The CULane metric draws every lane as a 30-px polyline on its own full-size (590x1640) mask and
compares masks pixel by pixel. Almost all of such a mask is empty, so here a lane is drawn only
inside its bounding box (grown by the line width and clipped to the image) with the coordinates
shifted by the box's corner, and IoUs are counted only where two boxes overlap.

This gives exactly the full-mask pixels: OpenCV's thick-line drawing works in integer (fixed
point) arithmetic, so a shift by whole pixels moves the drawn pixels by the same amount, and a
box side only coincides with a canvas border where it is the image border, so clipping happens
at the same place. One ``cv2.polylines`` call gives the union of the per-segment ``cv2.line``
calls (the joints are the same filled circles). ``tests/metrics/test_raster.py`` checks all of
this against full-canvas drawing on random, border-crossing and far-away lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Beyond this many pixels from the image, coordinates fall back to full-canvas drawing (OpenCV
# works in 16.16 fixed point; shifting such points would change how they overflow).
_FAR = 1 << 20


@dataclass(frozen=True, slots=True)
class LaneMask:
    """The pixels of one drawn lane: ``mask`` (uint8, non-zero = lane) placed at ``(x0, y0)``.

    ``area`` is the number of lane pixels; ``valid`` is False for a lane that was not drawn at
    all (the C++ recipe's lanes with fewer than 2 points), which has IoU 0 with everything.
    """

    x0: int
    y0: int
    mask: np.ndarray
    area: int
    valid: bool = True

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]


_EMPTY = np.zeros((0, 0), dtype=np.uint8)


def empty_mask(valid: bool = True) -> LaneMask:
    """A lane without pixels (entirely outside the image, or not drawn when ``valid`` is False)."""
    return LaneMask(0, 0, _EMPTY, 0, valid)


def draw_lane(points: np.ndarray, img_size: tuple[int, int], width: int) -> LaneMask:
    """Draw the polyline through integer ``points`` ((N, 2) x, y; N >= 2) with ``width``.

    The pixels are those of ``cv2.line(full_mask, p[i], p[i + 1], 255, width)`` for every
    consecutive pair on a ``img_size`` (height, width) mask, returned as a bounding-box crop.
    """
    height, img_width = img_size
    pts = np.ascontiguousarray(points, dtype=np.int32).reshape(-1, 2)
    if len(pts) < 2:
        raise ValueError("a drawn lane needs at least 2 points (repeat a point to draw a dot)")
    xs, ys = pts[:, 0], pts[:, 1]
    lo_x, hi_x = int(xs.min()), int(xs.max())
    lo_y, hi_y = int(ys.min()), int(ys.max())
    if min(lo_x, lo_y) < -_FAR or hi_x > img_width + _FAR or hi_y > height + _FAR:
        return _draw_full(pts, img_size, width)
    margin = width + 2
    x0, x1 = max(lo_x - margin, 0), min(hi_x + margin + 1, img_width)
    y0, y1 = max(lo_y - margin, 0), min(hi_y + margin + 1, height)
    if x0 >= x1 or y0 >= y1:
        return empty_mask()
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    shifted = pts - np.array([x0, y0], dtype=np.int32)
    cv2.polylines(canvas, [shifted.reshape(-1, 1, 2)], False, 255, thickness=width)
    return LaneMask(x0, y0, canvas, int(np.count_nonzero(canvas)))


def _draw_full(pts: np.ndarray, img_size: tuple[int, int], width: int) -> LaneMask:
    """The plain recipe (one ``cv2.line`` per segment on the full mask), for extreme points."""
    canvas = np.zeros(img_size, dtype=np.uint8)
    for p1, p2 in zip(pts[:-1], pts[1:], strict=True):
        cv2.line(canvas, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 255, width)
    return LaneMask(0, 0, canvas, int(np.count_nonzero(canvas)))


def intersection(a: LaneMask, b: LaneMask) -> int:
    """Number of pixels in both masks."""
    x0, x1 = max(a.x0, b.x0), min(a.x1, b.x1)
    y0, y1 = max(a.y0, b.y0), min(a.y1, b.y1)
    if x0 >= x1 or y0 >= y1 or a.area == 0 or b.area == 0:
        return 0
    crop_a = a.mask[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
    crop_b = b.mask[y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0]
    return int(np.count_nonzero(crop_a & crop_b))


def iou_matrix(rows: list[LaneMask], cols: list[LaneMask], empty_union: float = 0.0) -> np.ndarray:
    """IoU of every (row, col) mask pair, shape (len(rows), len(cols)), float64.

    The value is ``intersection / union`` computed as the reference does (two integer pixel
    counts divided in float64). A pair with an invalid mask gives 0; a pair of valid masks that
    are both empty (0 / 0) gives ``empty_union``.
    """
    ious = np.zeros((len(rows), len(cols)), dtype=np.float64)
    for i, a in enumerate(rows):
        if not a.valid:
            continue
        for j, b in enumerate(cols):
            if not b.valid:
                continue
            inter = intersection(a, b)
            union = a.area + b.area - inter
            ious[i, j] = inter / union if union > 0 else empty_union
    return ious
