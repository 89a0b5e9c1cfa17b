"""The decoded-lane type shared by the model's decoder, the prediction writers and the metrics."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

# Value returned for rows where a lane has no x (the TuSimple convention for "no point").
INVALID_X = -2.0
# The reference's Lane pads its y range by this much before answering "no point", so x is still
# extrapolated a little beyond the first and last decoded rows. Kept: it changes written files.
Y_MARGIN = 0.01


class Lane:
    """One lane: points in original-image normalised coordinates (x, y in [0, 1]), top -> bottom.

    ``lane.x_at(ys)`` samples x at any normalised y with a spline through the points
    (k = min(3, n - 1)); rows outside the lane's y range (padded by ``Y_MARGIN``) give
    ``INVALID_X``. ``score`` is the classification confidence when the lane comes from the model.
    """

    def __init__(self, points: np.ndarray, score: float | None = None) -> None:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(points) < 2:
            raise ValueError(f"a Lane needs at least 2 points, got {len(points)}")
        order = np.argsort(points[:, 1], kind="stable")
        self.points = points[order]
        ys = self.points[:, 1]
        if np.any(np.diff(ys) <= 0):
            raise ValueError("a Lane's points must have distinct y values")
        self.score = score
        self.min_y = float(ys[0]) - Y_MARGIN
        self.max_y = float(ys[-1]) + Y_MARGIN
        self._spline = InterpolatedUnivariateSpline(ys, self.points[:, 0], k=min(3, len(ys) - 1))

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Lane({len(self.points)} points, y {self.min_y:.3f}..{self.max_y:.3f})"

    def x_at(self, ys: np.ndarray) -> np.ndarray:
        """x (normalised) at normalised ``ys``; ``INVALID_X`` outside the lane's y range."""
        ys = np.asarray(ys, dtype=np.float64)
        xs = self._spline(ys)
        xs[(ys < self.min_y) | (ys > self.max_y)] = INVALID_X
        return xs

    __call__ = x_at

    def to_pixels(self, width: int, height: int) -> np.ndarray:
        """The lane's own points in pixels of a ``width`` x ``height`` image, shape (N, 2)."""
        return self.points * np.array([width, height], dtype=np.float64)
