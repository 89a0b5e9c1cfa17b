"""From network predictions to lanes: score threshold, lane NMS, extension to the image border,
mapping back to the original image.

A prediction row is ``[logit_0, logit_1, start_y, length, x_0 .. x_{P-1}]``: start_y and length
are fractions of the ``P - 1`` row strips, xs are normalised by the input width and rows run
bottom -> top.

Lane NMS is the greedy LaneATT/CLRNet lane NMS, in plain torch, with the integer rounding of the
reference CUDA kernel, so that the same lanes survive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from src.lane import Lane


def to_nms_rows(predictions: Tensor, img_w: int) -> Tensor:
    """Rows in the kernel's layout: ``[_, _, start_row, end_row, xs in pixels]`` where
    ``end_row = start_row + length_rows - 1`` (fractional; rounded inside ``lane_overlaps``)."""
    n_strips = predictions.shape[-1] - 5
    rows = predictions.clone()
    rows[..., 2:4] *= n_strips
    rows[..., 3] = rows[..., 2] + rows[..., 3] - 1
    rows[..., 4:] *= img_w
    return rows


def _round_half_up(x: Tensor) -> Tensor:
    """C's ``(int)(x + 0.5)``: add one half, truncate toward zero."""
    return torch.trunc(x + 0.5).long()


def lane_overlaps(rows: Tensor, threshold: float) -> Tensor:
    """Pairwise "same lane" test for rows in the kernel layout (..., N, 4 + P) -> (..., N, N).

    Two lanes overlap when their common row range [max(starts), min(ends, P - 1)] is not empty
    and the mean |dx| over it is below ``threshold`` (pixels). The range indexes the row's
    columns from ``4 + start``: like the kernel (an unsigned char loop index), a start of -1 or
    -2 reaches into the start/end columns and a range starting before column 0 sums nothing.
    """
    num_points = rows.shape[-1] - 4
    start = _round_half_up(rows[..., 2])
    end = _round_half_up(rows[..., 3])
    lo = torch.maximum(start.unsqueeze(-1), start.unsqueeze(-2))  # (..., N, N)
    hi = torch.minimum(
        torch.minimum(end.unsqueeze(-1), end.unsqueeze(-2)), end.new_tensor(num_points - 1)
    )
    columns = torch.arange(rows.shape[-1], device=rows.device)
    first, last = (lo + 4).unsqueeze(-1), (hi + 4).unsqueeze(-1)
    window = (columns >= first) & (columns <= last) & (first >= 0)  # (..., N, N, 4 + P)
    diff = (rows.unsqueeze(-2) - rows.unsqueeze(-3)).abs()
    dist = (diff * window).sum(-1)
    return (hi >= lo) & (dist < threshold * (hi - lo + 1).to(rows.dtype))


def greedy_keep(overlaps: np.ndarray, candidates: int, top_k: int) -> list[int]:
    """Greedy NMS over score-sorted positions 0..candidates-1; returns the kept positions."""
    suppressed = np.zeros(candidates, dtype=bool)
    keep = []
    for i in range(candidates):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) == top_k:
            break
        suppressed |= overlaps[i, :candidates]
    return keep


def _lane_points(
    row: np.ndarray, prior_ys: np.ndarray, cut_height: int, ori_height: int
) -> np.ndarray | None:
    """Points (x, y) of one kept prediction in original-image normalised coordinates, top ->
    bottom; None when fewer than 2 points remain.

    Rows from start to end are kept; rows below start are kept while x stays inside [0, 1]
    (the lane is extended down to the image border); points outside [0, 1] are dropped.
    """
    n_strips = len(prior_ys) - 1
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
    lane_ys = prior_ys[inside][::-1]
    lane_ys = (lane_ys * (ori_height - cut_height) + cut_height) / ori_height
    return np.stack((lane_xs, lane_ys), axis=1)


@torch.no_grad()
def decode_predictions(
    predictions: Tensor,
    cut_heights: Sequence[int],
    ori_heights: Sequence[int],
    img_w: int,
    conf_threshold: float = 0.4,
    nms_thres: float = 50.0,
    max_lanes: int = 4,
) -> list[list[Lane]]:
    """Decode a batch of predictions (B, N, 4 + P) into lanes, one list per image (best score
    first). ``cut_heights`` / ``ori_heights``: per image, the rows cut from the top of the
    original image before resizing and the original image height (pixels)."""
    if len(cut_heights) != len(predictions) or len(ori_heights) != len(predictions):
        raise ValueError(
            f"need one cut_height and one ori_height per image: got {len(cut_heights)} and "
            f"{len(ori_heights)} for {len(predictions)} images"
        )
    predictions = predictions.detach().float()
    num_points = predictions.shape[-1] - 4
    scores = predictions[..., :2].softmax(-1)[..., 1]  # (B, N)
    order = scores.argsort(dim=-1, descending=True, stable=True)
    sorted_preds = predictions.gather(1, order.unsqueeze(-1).expand_as(predictions))
    candidates = (scores >= conf_threshold).sum(-1)
    # Candidates are a prefix of the score order: compare only the first max(candidates) rows.
    num_compared = int(candidates.max())
    overlaps = lane_overlaps(to_nms_rows(sorted_preds[:, :num_compared], img_w), nms_thres)

    # One transfer to the CPU for the whole batch; the greedy pass and the points are tiny.
    overlaps_np = overlaps.cpu().numpy()
    preds_np = sorted_preds.cpu().numpy()
    scores_np = scores.gather(1, order).cpu().numpy()
    candidates_np = candidates.cpu().numpy()
    prior_ys = torch.linspace(1, 0, steps=num_points, dtype=torch.float32).double().numpy()

    decoded = []
    for b in range(len(predictions)):
        lanes = []
        for i in greedy_keep(overlaps_np[b], int(candidates_np[b]), max_lanes):
            points = _lane_points(preds_np[b, i], prior_ys, cut_heights[b], ori_heights[b])
            if points is not None:
                lanes.append(Lane(points, score=float(scores_np[b, i])))
        decoded.append(lanes)
    return decoded
