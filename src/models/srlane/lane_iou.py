"""LaneIoU (CLRNet line IoU with CLRerNet's slope-adaptive widths) between lanes given as x
coordinates (pixels) on shared rows.

Each lane point is widened to a horizontal segment of half width
``width * sqrt(dx^2 + dy^2) / dy`` (dx from the neighbouring points one row above and below,
dy the row spacing), so slanted lanes get wider segments. The IoU sums overlaps and unions over
the rows where the *target* lies inside [0, img_w); target points whose neighbours leave the
image fall back to the plain ``width``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _half_widths(xs: Tensor, width: float, delta_y: float) -> Tensor:
    """Slope-adaptive half widths (same shape as ``xs``); the end rows copy their neighbour."""
    inner = ((xs[..., 2:] - xs[..., :-2]) ** 2 + delta_y**2) ** 0.5 / delta_y * width
    return torch.cat((inner[..., :1], inner, inner[..., -1:]), dim=-1)


def lane_iou(
    pred: Tensor,
    target: Tensor,
    img_w: float,
    width: float = 7.5,
    delta_y: float = 320 / 71,
    pred_width_from_target: bool = False,
) -> Tensor:
    """LaneIoU over the last dimension; ``pred`` and ``target`` broadcast against each other.

    Pass (N, P) and (N, P) for aligned pairs, or (N, 1, P) and (1, G, P) for all pairs (N, G).
    Gradients flow through the segment ends of ``pred`` only (widths are constants).

    ``pred_width_from_target`` (not the reference): the prediction's segments take the target's
    widths. With its own widths, a jagged prediction gets wide segments that contain the
    target's, where the IoU has no gradient, so the jag is never corrected.
    """
    with torch.no_grad():
        inside = (target >= 0) & (target < img_w)
        both_neighbours = inside[..., 2:] & inside[..., :-2]
        both_neighbours = torch.cat(
            (both_neighbours[..., :1], both_neighbours, both_neighbours[..., -1:]), dim=-1
        )
        target_half = _half_widths(target, width, delta_y)
        target_half = torch.where(both_neighbours, target_half, torch.full_like(target_half, width))
        if pred_width_from_target:
            pred_half = target_half
        else:
            pred_half = _half_widths(pred, width, delta_y)
    pred_lo, pred_hi = pred - pred_half, pred + pred_half
    target_lo, target_hi = target - target_half, target + target_half
    overlap = torch.minimum(pred_hi, target_hi) - torch.maximum(pred_lo, target_lo)
    union = torch.maximum(pred_hi, target_hi) - torch.minimum(pred_lo, target_lo)
    outside = (target < 0) | (target >= img_w)
    overlap = overlap.masked_fill(outside, 0.0)
    union = union.masked_fill(outside, 0.0)
    return overlap.sum(-1) / (union.sum(-1) + 1e-9)
