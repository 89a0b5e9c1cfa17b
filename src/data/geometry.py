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

    Returns the pieces inside the box, in order, each an (N, 2) array (of at least 2 points,
    unless the whole polyline is one point inside the box); a polyline that leaves and re-enters
    the box becomes two pieces. Crossing points are inserted
    where a segment meets the border (Liang-Barsky). A piece is its first segment's entry point
    followed by every segment's exit point, ``start + t * (end - start)``: for a segment inside
    the box that is ``start + (end - start)``, which can differ from ``end`` in the last bit.

    Only the few segments that cross the border are clipped, one by one in Python floats (the
    same IEEE operations as numpy's); the stretches inside the box are sliced whole. That is
    2.5x faster per training lane than clipping every segment with numpy, with the same output.
    """
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    inside = (x >= 0) & (x <= width) & (y >= 0) & (y <= height)
    if inside.all():
        return [points] if len(points) else []
    if len(points) < 2:
        return []
    start, delta = points[:-1], np.diff(points, axis=0)
    exits = start + delta  # the exit point of each segment that ends inside the box (t = 1)
    crossing = np.flatnonzero(~(inside[:-1] & inside[1:])).tolist()
    pieces: list[list[np.ndarray]] = []
    continues = False  # the next segment continues the last piece if it enters at t = 0
    stretch = 0  # first segment after the last crossing one
    for index in [*crossing, len(start)]:
        if index > stretch:  # segments stretch .. index - 1 lie inside the box
            if not continues:
                pieces.append([start[stretch : stretch + 1]])
            pieces[-1].append(exits[stretch:index])
            continues = True
        if index == len(start):
            break
        stretch = index + 1
        (sx, sy), (dx, dy) = start[index].tolist(), delta[index].tolist()
        window = _segment_window(sx, sy, dx, dy, width, height)
        if window is None:
            continues = False
            continue
        t_enter, t_leave = window
        exit_point = np.array([[sx + t_leave * dx, sy + t_leave * dy]])
        if continues and t_enter == 0.0:
            pieces[-1].append(exit_point)
        else:
            pieces.append([np.array([[sx + t_enter * dx, sy + t_enter * dy]]), exit_point])
        continues = t_leave == 1.0
    return [np.concatenate(piece) for piece in pieces]


def _segment_window(
    sx: float, sy: float, dx: float, dy: float, width: float, height: float
) -> tuple[float, float] | None:
    """(t_enter, t_leave) in [0, 1] of the part of the segment (sx, sy) + t (dx, dy) inside the
    box; None when no part is: its 4 constraints p * t <= q, one per box side."""
    t_enter, t_leave = 0.0, 1.0
    for p, q in ((-dx, sx), (dx, width - sx), (-dy, sy), (dy, height - sy)):
        if p < 0:
            t_enter = max(t_enter, q / p)
        elif p > 0:
            t_leave = min(t_leave, q / p)
        elif q < 0:  # parallel to this side and outside it
            return None
    if t_enter > t_leave:
        return None
    return min(max(t_enter, 0.0), 1.0), min(max(t_leave, 0.0), 1.0)
