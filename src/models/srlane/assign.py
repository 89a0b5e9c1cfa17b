"""Dynamic top-k label assignment (CLRerNet style), for a whole batch at once.

Per image: cost = focal cost of the lane probability - iou_weight * LaneIoU(width 30) / its
maximum over the image. Each ground-truth lane g takes its k_g cheapest proposals, with
k_g = max(1, int(sum of its top-``num_candidates`` LaneIoU(width 7.5), clipped at 0)). A proposal
taken by several lanes is given to the lane it is cheapest for (over all lanes of the image).
Images are padded to ``max_lanes`` ground-truth rows; ``valid`` says which rows are real.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from src.models.common.focal import focal_cost

from .lane_iou import lane_iou


@torch.no_grad()
def dynamic_topk_assign(
    predictions: Tensor,
    targets: Tensor,
    valid: Tensor,
    img_w: float,
    delta_y: float,
    num_candidates: int = 4,
    iou_weight: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Match proposals to ground-truth lanes.

    Args:
        predictions: (B, N, 4 + P) with xs in pixels (columns 4:); column 1 is the lane logit.
        targets: (B, G, 4 + P) ground-truth rows with xs in pixels.
        valid: (B, G) bool, True for real ground-truth rows.

    Returns:
        matched: (B, N) bool, proposals assigned to some lane.
        gt_index: (B, N) long, the lane each matched proposal is assigned to (0 where unmatched).
    """
    pred_xs = predictions[..., 4:].unsqueeze(2)  # (B, N, 1, P)
    target_xs = targets[..., 4:].unsqueeze(1)  # (B, 1, G, P)
    valid_pairs = valid.unsqueeze(1)  # (B, 1, G)

    iou_wide = lane_iou(pred_xs, target_xs, img_w, width=30.0, delta_y=delta_y)  # (B, N, G)
    best = iou_wide.masked_fill(~valid_pairs, float("-inf")).amax(dim=(1, 2), keepdim=True)
    cls_cost = focal_cost(predictions[..., 1]).unsqueeze(-1)  # (B, N, 1)
    cost = cls_cost - iou_weight * iou_wide / best

    iou = lane_iou(pred_xs, target_xs, img_w, width=7.5, delta_y=delta_y).clamp(min=0)
    top = iou.topk(num_candidates, dim=1).values  # (B, k, G)
    dynamic_k = top.sum(1).int().clamp(min=1)  # (B, G)

    # Rank of each proposal in each lane's cost order; a lane takes the ranks below its k.
    order = cost.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(cost.shape[1], device=cost.device).view(1, -1, 1).expand_as(order)
    )
    chosen = (ranks < dynamic_k.unsqueeze(1)) & valid_pairs  # (B, N, G)

    contested = chosen.sum(-1) > 1
    cheapest = cost.masked_fill(~valid_pairs, float("inf")).argmin(-1)  # (B, N)
    cheapest = F.one_hot(cheapest, num_classes=cost.shape[-1]).bool()
    chosen = torch.where(contested.unsqueeze(-1), cheapest, chosen)
    return chosen.any(-1), chosen.to(torch.uint8).argmax(-1)
