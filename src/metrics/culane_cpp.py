"""The original C++ CULane tool's recipe (SCNN ``tools/lane_evaluation``), re-implemented.

Differences from the Python evaluator (``src/metrics/culane.py``), all reproduced here:

* Points are single-precision floats (the tool stores lanes as ``cv::Point2f``).
* A lane with more than 2 points is a natural cubic spline over chord length, each segment
  sampled 50 times (in double precision from the float points, each sample stored as a float),
  plus the last point. A 2-point lane is drawn as one segment. Drawing rounds the float points to
  the nearest integer (ties to even, as ``cvRound``).
* Lanes with fewer than 2 points (and blank lines of a file) still count as lanes; their IoU with
  every other lane is 0.
* Matching is the tool's own Kuhn-Munkres on the IoU matrix, which treats two weights as equal
  when they differ by less than 1e-2, so it can pick an assignment slightly below the optimum.
* IoU of two drawn lanes that are both entirely outside the image is 0 / 0 = NaN there; it never
  counts as a match.

Checked against the tool built from source (OpenCV 4.6) on 2,950 generated images, per image
at IoU 0.50..0.95: identical. On 600 images of odd lanes (1-point, blank, far outside the image)
2 differed, both from a 1-pixel difference between OpenCV 4.6 and 5.0 in drawing a thick
segment that crosses the image border; drawing here uses the installed OpenCV.

Repeated consecutive points make the tool's spline divide by zero; they are dropped from lanes
with more than 2 points before the spline (a lane left with 1 point is drawn as a dot, as the tool
draws a 2-point lane whose points coincide).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLES_PER_SEGMENT = 50
# The tool's tolerance for "this edge is tight" in its Kuhn-Munkres search.
_TIGHT = 1e-2


def cpp_lane_points(points: np.ndarray) -> np.ndarray | None:
    """The tool's drawn polyline for one lane: (M, 2) int32, or None when it draws nothing."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).astype(np.float32)
    if len(pts) > 2:
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        pts = pts[keep]
        if len(pts) == 1:
            pts = np.concatenate([pts, pts])
    if len(pts) < 2:
        return None
    if len(pts) > 2:
        pts = natural_spline_samples(pts, SAMPLES_PER_SEGMENT)
    return np.rint(pts).astype(np.int32)


def natural_spline_samples(pts: np.ndarray, times: int) -> np.ndarray:
    """Samples of the tool's natural cubic spline through float32 ``pts`` (N > 2, no repeats).

    Arithmetic follows the tool: point differences in single precision, everything else in
    double, the tridiagonal system solved by the Thomas algorithm, samples stored as float32.
    """
    n = len(pts)
    diff = (pts[1:] - pts[:-1]).astype(np.float64)  # float32 subtraction, then widened
    h = np.sqrt(diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1])
    slope = diff / h[:, None]
    # Tridiagonal system for the second derivatives at the n - 2 interior points.
    a = h[:-1].tolist()
    b = (2 * (h[:-1] + h[1:])).tolist()
    c = h[1:].tolist()
    rhs = (6 * (slope[1:] - slope[:-1])).tolist()
    c[0] = c[0] / b[0]
    rhs[0] = [rhs[0][0] / b[0], rhs[0][1] / b[0]]
    for i in range(1, n - 2):
        tmp = b[i] - a[i] * c[i - 1]
        c[i] = c[i] / tmp
        rhs[i] = [
            (rhs[i][0] - a[i] * rhs[i - 1][0]) / tmp,
            (rhs[i][1] - a[i] * rhs[i - 1][1]) / tmp,
        ]
    m = [[0.0, 0.0] for _ in range(n)]
    m[n - 2] = list(rhs[n - 3])
    for i in range(n - 4, -1, -1):
        m[i + 1] = [rhs[i][0] - c[i] * m[i + 2][0], rhs[i][1] - c[i] * m[i + 2][1]]
    m[0] = [0.0, 0.0]
    m[n - 1] = [0.0, 0.0]
    mm = np.array(m, dtype=np.float64)
    # Per-segment cubic coefficients, then `times` samples per segment.
    hh = h[:, None]
    coef_a = pts[:-1].astype(np.float64)
    coef_b = slope - (2 * hh * mm[:-1] + hh * mm[1:]) / 6
    coef_c = mm[:-1] / 2
    coef_d = (mm[1:] - mm[:-1]) / (6 * hh)
    t = (h / times)[:, None] * np.arange(times, dtype=np.float64)[None, :]  # (n-1, times)
    t = t[:, :, None]
    t2 = t * t
    t3 = t2 * t
    samples = coef_a[:, None] + coef_b[:, None] * t + coef_c[:, None] * t2 + coef_d[:, None] * t3
    out = np.empty((len(samples) * times + 1, 2), dtype=np.float32)
    out[:-1] = samples.reshape(-1, 2).astype(np.float32)
    out[-1] = pts[-1]
    return out


def scnn_match(similarity: np.ndarray) -> list[int]:
    """The tool's assignment: for each row (GT lane) the matched column (prediction) or -1.

    ``similarity`` is (n_gt, n_pred) IoU; the smaller side is put on the left, as the tool does.
    """
    n_rows, n_cols = similarity.shape
    if n_rows == 0 or n_cols == 0:
        return [-1] * n_rows
    swapped = n_rows > n_cols
    mat = (similarity.T if swapped else similarity).tolist()
    left_match, right_match = _kuhn_munkres(mat)
    return right_match if swapped else left_match


def _kuhn_munkres(mat: list[list[float]]) -> tuple[list[int], list[int]]:
    """Kuhn-Munkres with the tool's tolerance and its early exit; NaN weights never match."""
    n_left, n_right = len(mat), len(mat[0])
    left_match = [-1] * n_left
    right_match = [-1] * n_right
    right_w = [0.0] * n_right
    left_w = []
    for row in mat:
        best = -1e5
        for v in row:
            if best < v:
                best = v
        left_w.append(best)
    left_used = [False] * n_left
    right_used = [False] * n_right

    def dfs(u: int) -> bool:
        left_used[u] = True
        for v in range(n_right):
            if not right_used[v] and math.fabs(left_w[u] + right_w[v] - mat[u][v]) < _TIGHT:
                right_used[v] = True
                if right_match[v] == -1 or dfs(right_match[v]):
                    right_match[v] = u
                    left_match[u] = v
                    return True
        return False

    for u in range(n_left):
        while True:
            left_used[:] = [False] * n_left
            right_used[:] = [False] * n_right
            if dfs(u):
                break
            d = 1e10
            for i in range(n_left):
                if left_used[i]:
                    for j in range(n_right):
                        if not right_used[j]:
                            slack = left_w[i] + right_w[j] - mat[i][j]
                            if slack < d:
                                d = slack
            if d == 1e10:
                return left_match, right_match
            for i in range(n_left):
                if left_used[i]:
                    left_w[i] -= d
            for j in range(n_right):
                if right_used[j]:
                    right_w[j] += d
    return left_match, right_match
