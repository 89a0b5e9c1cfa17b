"""SRLane decoding in numpy only: score threshold, lane NMS, extension to the image border,
mapping back to the original image.

This file imports nothing but numpy (no torch, no Hydra, no project module), so a deployment
needs onnxruntime + numpy + a copy of this file. The model's decoder (``SRLane.decode``,
``decode.decode_predictions``, via ``src.models.common.decode``) is a thin torch wrapper
around ``decode_lanes``, so both give the same lanes, points and scores bit for bit on the same
predictions. Each model's decoder is one self-contained file, hence a few small helpers
(``prior_ys``, ``scores_of``) that the two files both hold.

A prediction row is ``[logit_0, logit_1, start_y, length, x_0 .. x_{P-1}]``: start_y and length
are fractions of the ``P - 1`` row strips, xs are normalised by the input width, rows run
bottom -> top. The network input is the original image cut at ``cut_height`` rows from the top,
resized (cubic) to input_w x input_h, RGB / 255 (no mean / std).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Keys of the export's decode JSON that are arguments of ``decode_lanes``.
DECODE_KEYS = ("img_w", "conf_threshold", "nms_thres", "max_lanes")


def prior_ys(num_points: int) -> np.ndarray:
    """Row positions 1 -> 0 (bottom -> top), float64 holding exactly the float32 values of
    ``torch.linspace(1, 0, num_points)``: torch fills the first half as ``start + step * i``
    and the second as ``end - step * (n - 1 - i)`` with a fused multiply-add, which one rounding
    of the float64 result reproduces (the product of a float32 step and a small int is exact)."""
    if num_points < 2:
        raise ValueError(f"need at least 2 points per lane, got {num_points}")
    step = np.float64(np.float32(-1.0) / np.float32(num_points - 1))
    index = np.arange(num_points, dtype=np.float64)
    first = (1.0 + step * index).astype(np.float32)
    second = (0.0 - step * (num_points - 1 - index)).astype(np.float32)
    return np.where(index < num_points // 2, first, second).astype(np.float64)


def scores_of(predictions: np.ndarray) -> np.ndarray:
    """Softmax probability of the lane class, (..., N, 4 + P) -> (..., N) float32."""
    logits = predictions[..., :2].astype(np.float32)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted[..., 1] / shifted.sum(-1)).astype(np.float32)


def to_nms_rows(predictions: np.ndarray, img_w: int) -> np.ndarray:
    """Rows in the reference NMS kernel's layout: ``[_, _, start_row, end_row, xs in pixels]``
    with ``end_row = start_row + length_rows - 1`` (fractional; rounded in ``lane_overlaps``)."""
    n_strips = predictions.shape[-1] - 5
    rows = predictions.astype(np.float32, copy=True)
    rows[..., 2:4] *= np.float32(n_strips)
    rows[..., 3] = rows[..., 2] + rows[..., 3] - np.float32(1)
    rows[..., 4:] *= np.float32(img_w)
    return rows


def lane_overlaps(
    rows: np.ndarray, threshold: float, others: np.ndarray | None = None
) -> np.ndarray:
    """The "same lane" test between rows (..., N, 4 + P) and ``others`` (..., M, 4 + P), both in
    the kernel layout (default: every pair of ``rows``) -> (..., N, M) bool.

    Two lanes overlap when their common row range [max(starts), min(ends, P - 1)] is not empty
    and the mean |dx| over it is below ``threshold`` (pixels). Like the kernel (an unsigned char
    loop index), the range indexes the row's columns from ``4 + start``: a start of -1 or -2
    reaches into the start/end columns and a range starting before column 0 sums nothing.
    """
    rows = np.asarray(rows, dtype=np.float32)
    others = rows if others is None else np.asarray(others, dtype=np.float32)
    num_points = rows.shape[-1] - 4
    start = np.trunc(rows[..., 2] + np.float32(0.5)).astype(np.int64)  # C's (int)(x + 0.5)
    end = np.trunc(rows[..., 3] + np.float32(0.5)).astype(np.int64)
    other_start = np.trunc(others[..., 2] + np.float32(0.5)).astype(np.int64)
    other_end = np.trunc(others[..., 3] + np.float32(0.5)).astype(np.int64)
    lo = np.maximum(start[..., :, None], other_start[..., None, :])  # (..., N, M)
    hi = np.minimum(np.minimum(end[..., :, None], other_end[..., None, :]), num_points - 1)
    columns = np.arange(rows.shape[-1])
    first, last = (lo + 4)[..., None], (hi + 4)[..., None]
    window = (columns >= first) & (columns <= last) & (first >= 0)  # (..., N, M, 4 + P)
    diff = np.abs(rows[..., :, None, :] - others[..., None, :, :])
    dist = (diff * window).sum(-1, dtype=np.float32)
    return (hi >= lo) & (dist < np.float32(threshold) * (hi - lo + 1).astype(np.float32))


def lane_nms(rows: np.ndarray, threshold: float, top_k: int) -> list[int]:
    """Greedy lane NMS over rows sorted best first (kernel layout); returns the kept positions.

    The kernel compares all pairs; only a kept row suppresses others, so comparing each kept
    row (at most ``top_k``) with the rows after it gives the same result in a fraction of the
    work (the pairs grow with the square of the candidates, which an untrained or low-threshold
    model makes many).
    """
    suppressed = np.zeros(len(rows), dtype=bool)
    keep: list[int] = []
    for i in range(len(rows)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == top_k:
            break
        suppressed[i + 1 :] |= lane_overlaps(rows[i : i + 1], threshold, rows[i + 1 :])[0]
    return keep


def lane_points(
    row: np.ndarray, ys: np.ndarray, cut_height: int, ori_height: int
) -> np.ndarray | None:
    """Points (x, y) of one kept prediction in original-image normalised coordinates, top ->
    bottom, float64 (K, 2); None when fewer than 2 points remain. ``ys``: ``prior_ys(P)``.

    Rows from start to end are kept; rows below start are kept while x stays inside [0, 1]
    (the lane is extended down to the image border); points outside [0, 1] are dropped.
    """
    n_strips = len(ys) - 1
    xs = row[4:].copy()
    start = min(max(0, int(round(float(row[2]) * n_strips))), n_strips)
    length = int(np.round(np.float32(row[3]) * np.float32(n_strips)))
    end = min(start + length - 1, n_strips)
    below = xs[:start]
    # Below start, keep only the run of inside points that touches the start row.
    touching = np.cumprod(((below >= 0) & (below <= 1))[::-1])[::-1].astype(bool)
    # Python slice semantics on purpose (as the reference): a negative end + 1 (length <= 0 at
    # start 0) counts from the top row.
    xs[end + 1 :] = -2
    below[~touching] = -2  # ``below`` is a view of ``xs``
    inside = (xs >= 0) & (xs <= 1)
    if inside.sum() <= 1:
        return None
    lane_xs = xs[inside].astype(np.float64)[::-1]
    lane_ys = ys[inside][::-1]
    lane_ys = (lane_ys * (ori_height - cut_height) + cut_height) / ori_height
    return np.stack((lane_xs, lane_ys), axis=1)


def decode_lanes(
    predictions: np.ndarray,
    cut_heights: Sequence[int],
    ori_heights: Sequence[int],
    img_w: int,
    conf_threshold: float = 0.4,
    nms_thres: float = 50.0,
    max_lanes: int = 4,
) -> list[list[tuple[np.ndarray, float]]]:
    """Decode raw network output (B, N, 4 + P) into lanes: per image a list of
    ``(points, score)``, best score first; points (K, 2) float64 are (x, y) normalised to the
    original image, top -> bottom (pixels: ``points * [ori_w, ori_h]``). ``cut_heights`` /
    ``ori_heights``: per image, the rows cut from the top before resizing and the original
    height. The other arguments are the decode JSON's (``decode_args``)."""
    predictions = np.asarray(predictions, dtype=np.float32)
    if predictions.ndim != 3 or predictions.shape[-1] < 6:
        raise ValueError(f"predictions must be (B, N, 4 + P), got shape {predictions.shape}")
    if len(cut_heights) != len(predictions) or len(ori_heights) != len(predictions):
        raise ValueError(
            f"need one cut_height and one ori_height per image: got {len(cut_heights)} and "
            f"{len(ori_heights)} for {len(predictions)} images"
        )
    ys = prior_ys(predictions.shape[-1] - 4)
    decoded = []
    for preds, cut, ori in zip(predictions, cut_heights, ori_heights, strict=True):
        scores = scores_of(preds)
        # Descending and stable, as torch's argsort(descending=True, stable=True).
        order = np.argsort(-scores, kind="stable")
        ranked, ranked_scores = preds[order], scores[order]
        candidates = int((scores >= np.float32(conf_threshold)).sum())
        lanes = []
        for i in lane_nms(to_nms_rows(ranked[:candidates], img_w), nms_thres, max_lanes):
            points = lane_points(ranked[i], ys, int(cut), int(ori))
            if points is not None:
                lanes.append((points, float(ranked_scores[i])))
        decoded.append(lanes)
    return decoded


def decode_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``decode_lanes`` keyword arguments from the export's decode JSON."""
    return {key: spec[key] for key in DECODE_KEYS}
