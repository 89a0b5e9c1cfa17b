"""Lane overlaps on shared rows: CLRNet's Line IoU and CLRerNet's LaneIoU.

Both widen every lane point to a horizontal segment and divide the summed overlaps by the summed
unions over the rows where the target lies inside the image. Arguments broadcast: pass (N, P)
and (N, P) for aligned pairs, or (N, 1, P) and (1, G, P) for all pairs (N, G).

CLRerNet's LaneIoU (hirotomusiker/CLRerNet, ``LaneIoULoss`` / ``LaneIoUCost``) works on xs as
fractions of the width and makes the half width grow with the lane's slope:
``w * sqrt(dx^2 + dy^2) / dy`` with dx, dy measured across two rows in a 1640 x 320 frame
(CULane's crop, whatever the dataset: the reference's default that its configs keep). The
assignment cost variant also restricts the prediction to its own start..end rows and counts a
row where only one lane exists as a union of that lane's segment. SRLane's LaneIoU
(``src/models/srlane/lane_iou.py``) is a different formula (dy across one row, input pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor

# CLRerNet measures lane slopes in this frame (LaneIoULoss / LaneIoUCost defaults).
CLRERNET_FRAME_W, CLRERNET_FRAME_H = 1640, 320
# Target steps wider than this (in frame pixels) are the jump to the -1e5 padding: width as if
# vertical there.
CLRERNET_MAX_DX = 1e4


def line_iou(pred: Tensor, target: Tensor, img_w: float, radius: float = 15.0) -> Tensor:
    """CLRNet's Line IoU: xs in pixels, every point widened by +-``radius``; rows where the
    target is outside [0, img_w) are ignored."""
    overlap = torch.min(pred + radius, target + radius) - torch.max(pred - radius, target - radius)
    union = torch.max(pred + radius, target + radius) - torch.min(pred - radius, target - radius)
    outside = (target < 0) | (target >= img_w)
    overlap = overlap.masked_fill(outside, 0.0)
    union = union.masked_fill(outside, 0.0)
    return overlap.sum(-1) / (union.sum(-1) + 1e-9)


def _slope_half_widths(xs: Tensor, width: float, is_target: bool) -> Tensor:
    dy = CLRERNET_FRAME_H / (xs.shape[-1] - 1) * 2
    dx = (xs[..., 2:] - xs[..., :-2]) * CLRERNET_FRAME_W
    if is_target:
        dx = dx.masked_fill(dx.abs() > CLRERNET_MAX_DX, 0.0)
    inner = width * torch.sqrt(dx.pow(2) + dy**2) / dy
    return torch.cat((inner[..., :1], inner, inner[..., -1:]), dim=-1)


def clrernet_lane_iou(
    pred: Tensor,
    target: Tensor,
    width: float,
    start: Tensor | None = None,
    end: Tensor | None = None,
) -> Tensor:
    """CLRerNet's LaneIoU of xs given as fractions of the width (inside = [0, 1)).

    Without ``start`` / ``end``: rows where the target is outside are ignored (the loss and the
    dynamic-k IoU). With them (the assignment cost; fractions of the strips, shaped like
    ``pred`` without its last dimension): the prediction only covers rows
    ``int(start * (P-1)) <= row < int(end * (P-1))`` inside the image, rows where neither lane
    exists are ignored, and a row where one lane exists adds that lane's segment to the union.
    Widths are constants (no gradient); gradients flow through ``pred``.
    """
    with torch.no_grad():
        pred_half = _slope_half_widths(pred.detach(), width, is_target=False)
        target_half = _slope_half_widths(target, width, is_target=True)
    overlap = torch.min(pred + pred_half, target + target_half) - torch.max(
        pred - pred_half, target - target_half
    )
    union = torch.max(pred + pred_half, target + target_half) - torch.min(
        pred - pred_half, target - target_half
    )
    target_out = (target < 0) | (target >= 1.0)
    if start is None or end is None:
        overlap = overlap.masked_fill(target_out, 0.0)
        union = union.masked_fill(target_out, 0.0)
        return overlap.sum(-1) / (union.sum(-1) + 1e-9)
    n_strips = pred.shape[-1] - 1
    rows = torch.arange(pred.shape[-1], device=pred.device)
    first = (start * n_strips).long().unsqueeze(-1)
    last = (end * n_strips).long().unsqueeze(-1)
    pred_out = (pred < 0) | (pred >= 1.0) | (rows < first) | (rows >= last)
    either_out = pred_out | target_out
    only_pred = either_out & ~pred_out
    only_target = either_out & ~target_out
    overlap = overlap.masked_fill(either_out, 0.0)
    union = union.masked_fill(either_out, 0.0)
    union = union + only_pred * (2 * pred_half) + only_target * (2 * target_half)
    return overlap.sum(-1) / (union.sum(-1) + 1e-9)
