"""Plane geometry for the lane pipeline: 3x3 affine matrices and polyline clipping.

Coordinates are continuous: pixel column i covers x in [i, i + 1), as for lane annotations
(and as imgaug treats keypoints). OpenCV's warp functions address pixel centres instead, so a
matrix M in continuous coordinates is applied to an image as ``opencv_matrix(M)``.
"""

from __future__ import annotations

import math

import numpy as np


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def crop_resize_matrix(
    src_w: int, src_h: int, cut_height: int, dst_w: int, dst_h: int
) -> np.ndarray:
    """Crop rows [cut_height, src_h) of a src_w x src_h image, then resize it to dst_w x dst_h."""
    return scaling(dst_w / src_w, dst_h / (src_h - cut_height)) @ translation(0.0, -cut_height)


def hflip_matrix(width: int) -> np.ndarray:
    """Mirror an image of the given width: x -> width - x."""
    return np.array([[-1.0, 0.0, float(width)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def affine_matrix(
    width: int,
    height: int,
    translate_x: float,
    translate_y: float,
    rotate_deg: float,
    scale: float,
    shear_x_deg: float,
) -> np.ndarray:
    """Scale, shear along x and rotate about the image centre, then translate (in pixels)."""
    cx, cy = width / 2.0, height / 2.0
    angle = math.radians(rotate_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    shear = np.array([[1.0, math.tan(math.radians(shear_x_deg)), 0.0], [0, 1, 0], [0, 0, 1]])
    return (
        translation(cx + translate_x, cy + translate_y)
        @ rotation
        @ shear
        @ scaling(scale, scale)
        @ translation(-cx, -cy)
    )


def opencv_matrix(matrix: np.ndarray) -> np.ndarray:
    """The 2x3 matrix for cv2.warpAffine that applies ``matrix`` (continuous coordinates) to an
    image: OpenCV's pixel (i, j) is the continuous point (i + 0.5, j + 0.5)."""
    return (translation(-0.5, -0.5) @ matrix @ translation(0.5, 0.5))[:2]


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 3x3 affine matrix to (N, 2) points."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def clip_polyline(points: np.ndarray, width: float, height: float) -> list[np.ndarray]:
    """Cut a polyline at the border of the box [0, width] x [0, height].

    Returns the pieces inside the box, in order, each an (N, 2) array; a piece that leaves and
    re-enters the box becomes two pieces. Crossing points are inserted where a segment meets the
    border. A single point is kept if it lies inside. Segment clipping is Liang-Barsky,
    vectorised over all segments.
    """
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    if inside.all():
        return [points] if len(points) else []
    if len(points) < 2:
        return []
    start, delta = points[:-1], np.diff(points, axis=0)
    # Each segment is start + t * delta, t in [0, 1]; the box gives 4 constraints p * t <= q.
    p = np.stack((-delta[:, 0], delta[:, 0], -delta[:, 1], delta[:, 1]), axis=1)
    q = np.stack((start[:, 0], width - start[:, 0], start[:, 1], height - start[:, 1]), axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = q / p
    t_enter = np.max(np.where(p < 0, ratio, 0.0), axis=1, initial=0.0)
    t_leave = np.min(np.where(p > 0, ratio, 1.0), axis=1, initial=1.0)
    parallel_outside = np.any((p == 0) & (q < 0), axis=1)
    visible = (t_enter <= t_leave) & ~parallel_outside
    t_enter = np.clip(t_enter, 0.0, 1.0)
    t_leave = np.clip(t_leave, 0.0, 1.0)
    entry = start + t_enter[:, None] * delta
    exit_ = start + t_leave[:, None] * delta
    # A visible segment continues the previous piece when both share an inside vertex; a
    # piece is its first segment's entry point followed by every segment's exit point.
    continues = np.zeros(len(start), dtype=bool)
    continues[1:] = visible[:-1] & visible[1:] & (t_leave[:-1] == 1.0) & (t_enter[1:] == 0.0)
    shown = np.flatnonzero(visible)
    if not len(shown):
        return []
    opens = ~continues[shown]
    pairs = np.stack((entry[shown], exit_[shown]), axis=1).reshape(-1, 2)
    keep = np.stack((opens, np.ones_like(opens)), axis=1).reshape(-1)
    flat = pairs[keep]
    first = np.flatnonzero(opens)
    offsets = first + np.arange(len(first))  # each opening adds one extra (entry) point
    return np.split(flat, offsets[1:])
