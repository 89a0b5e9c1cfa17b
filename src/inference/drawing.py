"""Lanes drawn on images: predicted in red, ground truth in green."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

PRED_COLOR = (0, 0, 255)  # BGR red
GT_COLOR = (0, 200, 0)  # BGR green


def draw_lanes(
    image_bgr: np.ndarray,
    pred_lanes: Sequence[np.ndarray],
    gt_lanes: Sequence[np.ndarray] = (),
    thickness: int = 4,
) -> np.ndarray:
    """A copy of the image with true lanes (green, under) and predicted lanes (red, over).

    Lanes are (N, 2) arrays of (x, y) pixels of this image.
    """
    canvas = image_bgr.copy()
    for lanes, color, width in (
        (gt_lanes, GT_COLOR, thickness + 4),
        (pred_lanes, PRED_COLOR, thickness),
    ):
        for lane in lanes:
            if len(lane) < 2:
                continue
            points = np.round(np.asarray(lane, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [points], isClosed=False, color=color, thickness=width)
    return canvas
