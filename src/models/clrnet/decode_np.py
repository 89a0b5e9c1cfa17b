"""CLRNet decoding in numpy only: score threshold, lane NMS, mapping to the original image.

This file imports nothing but numpy (no torch, no project module), so a deployment needs
onnxruntime + numpy + a copy of this file. The model's decoder (``CLRNet.decode``,
``decode.decode_predictions``, via ``src.models.common.decode``) is a thin torch wrapper
around ``decode_lanes``, so both give the same lanes, points and scores bit for bit on the same
predictions. Each model's decoder is one self-contained file, hence a few small helpers
(``prior_ys``, ``scores_of``) that the two files both hold.

A prediction row is ``[bg logit, fg logit, start_y, start_x, theta, length, x_0 .. x_{P-1}]``:
start_y and length are fractions of the P - 1 row strips, start_x and the xs are divided by
input_w - 1, rows run bottom -> top. Decoding reproduces the reference (Turoad/CLRNet) exactly:

- NMS is the reference CUDA kernel's greedy lane NMS on rows
  ``[s0, s1, start_y, start_x, length * (P-1), xs * (input_w - 1)]`` (theta dropped): start row
  ``(int)(start_y * (P-1) + 0.5)``, end row ``(int)(start + length - 1 + 0.5 - (length < 1))``,
  the common rows end at ``min(end, P - 1)``, never overlapping when end < start, |dx| summed in
  float32 from the column ``5 + start`` taken as an unsigned char (so a negative start reads the
  columns before the xs, or wraps), compared with ``threshold * rows``;
- a kept lane starts at row ``round(start_y * (P-1))`` (Python's round) and spans
  ``round(length * (P-1))`` rows (half to even); below the start it is extended while x stays in
  [0, 1]; of the rest, every point with x >= 0 is kept (x > 1 included, and a point with x < 0
  inside the span leaves a gap);
- points are (x, y) with x = the normalised x as predicted (the reference treats x / (input_w -
  1) as a fraction of the original width) and y mapped through the cut to a fraction of the
  original height.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Keys of the export's decode JSON that are arguments of ``decode_lanes``.
DECODE_KEYS = ("img_w", "conf_threshold", "nms_thres", "max_lanes")
# Columns of a row before its xs.
HEAD = 6


def prior_ys(num_points: int) -> np.ndarray:
    """Row positions 1 -> 0 (bottom -> top) as float64 holding exactly the float32 values of
    ``torch.linspace(1, 0, num_points)`` (torch fills the first half as ``start + step * i``
    and the second as ``end - step * (n - 1 - i)``, which one rounding of the float64 result
    reproduces)."""
    if num_points < 2:
        raise ValueError(f"need at least 2 points per lane, got {num_points}")
    step = np.float64(np.float32(-1.0) / np.float32(num_points - 1))
    index = np.arange(num_points, dtype=np.float64)
    first = (1.0 + step * index).astype(np.float32)
    second = (0.0 - step * (num_points - 1 - index)).astype(np.float32)
    return np.where(index < num_points // 2, first, second).astype(np.float64)


def scores_of(predictions: np.ndarray) -> np.ndarray:
    """Softmax probability of the lane class, (..., N, 6 + P) -> (..., N) float32."""
    logits = predictions[..., :2].astype(np.float32)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return (shifted[..., 1] / shifted.sum(-1)).astype(np.float32)


def nms_rows(predictions: np.ndarray, img_w: int) -> np.ndarray:
    """Rows in the reference NMS kernel's layout, float32 (..., N, 5 + P)."""
    n_strips = predictions.shape[-1] - HEAD - 1
    rows = np.concatenate((predictions[..., :4], predictions[..., 5:]), axis=-1)
    rows = rows.astype(np.float32, copy=True)
    rows[..., 4] *= np.float32(n_strips)
    rows[..., 5:] *= np.float32(img_w - 1)
    return rows


def _kernel_rows(rows: np.ndarray, n_strips: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) rows as the kernel rounds them, int64."""
    f32 = np.float32
    start = np.trunc((rows[..., 2] * f32(n_strips)).astype(np.float64) + 0.5).astype(np.int64)
    last = start.astype(f32) + rows[..., 4] - f32(1)
    short = (rows[..., 4] - f32(1)) < 0
    end = np.trunc(last.astype(np.float64) + 0.5 - short).astype(np.int64)
    return start, end


def lane_overlaps(rows: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """The kernel's "same lane" test between rows (A, 5 + P) and ``others`` (B, 5 + P) in its
    layout -> (A, B) bool."""
    rows = np.asarray(rows, dtype=np.float32)[:, None, :]
    others = np.asarray(others, dtype=np.float32)[None, :, :]
    num_points = rows.shape[-1] - 5
    start_a, end_a = _kernel_rows(rows, num_points - 1)
    start_b, end_b = _kernel_rows(others, num_points - 1)
    lo = np.maximum(start_a, start_b)
    hi = np.minimum(np.minimum(end_a, end_b), num_points - 1)
    first = np.mod(lo + 5, 256)[..., None]  # the kernel's unsigned char loop index
    columns = np.arange(rows.shape[-1])
    window = (columns >= first) & (columns <= (hi + 5)[..., None])
    diff = np.abs(rows - others)
    # cumsum adds left to right in float32, as the kernel's loop does.
    dist = np.cumsum(np.where(window, diff, np.float32(0)), axis=-1, dtype=np.float32)[..., -1]
    count = (hi - lo + 1).astype(np.float32)
    return (hi >= lo) & (dist < np.float32(threshold) * count)


def lane_nms(rows: np.ndarray, threshold: float, top_k: int) -> list[int]:
    """Greedy NMS over rows sorted best first (kernel layout); returns the kept positions.

    The kernel compares all pairs; only a kept row suppresses others, so comparing each kept
    row (at most ``top_k``) with the rest gives the same result in a fraction of the work.
    """
    suppressed = np.zeros(len(rows), dtype=bool)
    keep: list[int] = []
    for i in range(len(rows)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == top_k:
            break
        suppressed[i + 1 :] |= lane_overlaps(rows[i : i + 1], rows[i + 1 :], threshold)[0]
    return keep


def lane_points(
    row: np.ndarray, ys: np.ndarray, cut_height: int, ori_height: int
) -> np.ndarray | None:
    """Points (x, y) of one kept prediction, top -> bottom, float64 (K, 2), x as predicted and
    y a fraction of the original height; None when fewer than 2 points remain. ``ys``:
    ``prior_ys(P)``."""
    n_strips = len(ys) - 1
    xs = row[HEAD:].astype(np.float32, copy=True)
    start = min(max(0, int(round(float(row[2]) * n_strips))), n_strips)
    length = int(np.round(np.float32(row[5]) * np.float32(n_strips)))
    end = min(start + length - 1, n_strips)
    below = xs[:start]
    # Below start, keep only the run of inside points that touches the start row.
    touching = np.cumprod(((below >= 0) & (below <= 1))[::-1])[::-1].astype(bool)
    # Python slice semantics on purpose (as the reference): a negative end + 1 (length <= 0 at
    # start 0) counts from the top row.
    xs[end + 1 :] = -2
    below[~touching] = -2  # ``below`` is a view of ``xs``
    kept = xs >= 0
    if kept.sum() <= 1:
        return None
    lane_xs = xs[kept].astype(np.float64)[::-1]
    lane_ys = ys[kept][::-1]
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
    """Decode raw network output (B, N, 6 + P) into lanes: per image a list of
    ``(points, score)``, best score first (see ``lane_points``; pixels: ``points * [ori_w,
    ori_h]``). ``cut_heights`` / ``ori_heights``: per image, the rows cut from the top before
    resizing and the original height. The other arguments are the decode JSON's
    (``decode_args``); ``img_w`` is the network's input width."""
    predictions = np.asarray(predictions, dtype=np.float32)
    if predictions.ndim != 3 or predictions.shape[-1] < HEAD + 2:
        raise ValueError(f"predictions must be (B, N, 6 + P), got shape {predictions.shape}")
    if len(cut_heights) != len(predictions) or len(ori_heights) != len(predictions):
        raise ValueError(
            f"need one cut_height and one ori_height per image: got {len(cut_heights)} and "
            f"{len(ori_heights)} for {len(predictions)} images"
        )
    ys = prior_ys(predictions.shape[-1] - HEAD)
    decoded = []
    for preds, cut, ori in zip(predictions, cut_heights, ori_heights, strict=True):
        scores = scores_of(preds)
        # Descending and stable, as torch's argsort(descending=True, stable=True).
        order = np.argsort(-scores, kind="stable")
        ranked, ranked_scores = preds[order], scores[order]
        candidates = int((scores >= np.float32(conf_threshold)).sum())
        rows = nms_rows(ranked[:candidates], img_w)
        lanes = []
        for i in lane_nms(rows, nms_thres, max_lanes):
            points = lane_points(ranked[i], ys, int(cut), int(ori))
            if points is not None:
                lanes.append((points, float(ranked_scores[i])))
        decoded.append(lanes)
    return decoded


def decode_args(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The ``decode_lanes`` keyword arguments from the export's decode JSON."""
    return {key: spec[key] for key in DECODE_KEYS}
