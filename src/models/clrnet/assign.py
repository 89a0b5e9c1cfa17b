"""CLRNet's dynamic-k label assignment, for a whole batch at once (the reference loops over
images).

Per image, with G valid ground-truth lanes:

- cost (N, G) = -(distance * start point * angle similarity)^2 * 3 + focal cost, each similarity
  ``1 - d / max(d) + 0.01`` over the image's pairs: mean |dx| on the target's rows (pixels),
  the start point distance (start_y * (img_h - 1), start_x in pixels; ``torch.cdist`` as the
  reference), |d theta| * 180;
- k_g = max(1, int(sum of the top-4 Line IoUs (radius 15 px), clipped at 0)) for each lane;
- each lane takes its k_g cheapest priors; a prior taken by several lanes is then fixed up.

Quirk reproduced (``unique_assignment=False``): the fix-up clears only the first lane's column
before marking the cheapest lane, so a prior can stay matched to several lanes and is trained
towards the first of them. ``unique_assignment=True`` keeps only the cheapest (CLRerNet's 2025
fix). ``lane_iou_cost=True`` is CLRerNet's cost: ``-(1 - (1 - LaneIoU_30) / max + 0.01) * 3 +
focal cost``, with k_g from LaneIoU width 7.5 (``lane_iou.clrernet_lane_iou``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from src.models.common.focal import focal_cost

from .lane_iou import clrernet_lane_iou, line_iou

NUM_CANDIDATES = 4  # top IoUs summed for the dynamic k
DISTANCE_COST_WEIGHT = 3.0
LINE_IOU_RADIUS = 15.0
CLRERNET_COST_WIDTH = 30 / 800
CLRERNET_WIDTH = 7.5 / 800


def _similarity(distance: Tensor, valid_pairs: Tensor) -> Tensor:
    """``1 - d / max(d) + 0.01`` with the maximum over each image's valid pairs."""
    largest = distance.masked_fill(~valid_pairs, float("-inf")).amax(dim=(1, 2), keepdim=True)
    return 1 - distance / largest + 1e-2


def clrnet_cost(
    predictions: Tensor, targets: Tensor, valid: Tensor, img_w: int, img_h: int
) -> tuple[Tensor, Tensor]:
    """(cost (B, N, G), Line IoU (B, N, G)) of CLRNet's assignment."""
    valid_pairs = valid.unsqueeze(1)
    pred_xs = (predictions[..., 6:] * (img_w - 1)).unsqueeze(2)  # (B, N, 1, P)
    target_xs = targets[..., 6:].unsqueeze(1)  # (B, 1, G, P)
    outside = (target_xs < 0) | (target_xs >= img_w)
    rows = (~outside).sum(-1)
    distance = (target_xs - pred_xs).abs().masked_fill(outside, 0.0).sum(-1) / (rows + 1e-9)

    pred_start = torch.stack(
        (predictions[..., 2] * (img_h - 1), predictions[..., 3] * (img_w - 1)), dim=-1
    )
    target_start = torch.stack((targets[..., 2] * (img_h - 1), targets[..., 3]), dim=-1)
    start_distance = torch.cdist(pred_start, target_start, p=2)
    angle_distance = (predictions[..., 4:5] - targets[..., 4].unsqueeze(1)).abs() * 180

    similarity = (
        _similarity(distance, valid_pairs)
        * _similarity(start_distance, valid_pairs)
        * _similarity(angle_distance, valid_pairs)
    )
    cost = -(similarity**2) * DISTANCE_COST_WEIGHT + focal_cost(predictions[..., 1]).unsqueeze(-1)
    return cost, line_iou(pred_xs, target_xs, img_w, LINE_IOU_RADIUS)


def clrernet_cost(
    predictions: Tensor, targets: Tensor, valid: Tensor, img_w: int
) -> tuple[Tensor, Tensor]:
    """(cost (B, N, G), LaneIoU for the dynamic k (B, N, G)) of CLRerNet's assignment."""
    pred_xs = predictions[..., 6:].unsqueeze(2)  # fractions of img_w - 1
    target_xs = (targets[..., 6:] / (img_w - 1)).unsqueeze(1)
    start = predictions[..., 2].clamp(0, 1)
    end = (start + predictions[..., 5]).clamp(0, 1)
    iou = clrernet_lane_iou(
        pred_xs, target_xs, CLRERNET_COST_WIDTH, start.unsqueeze(-1), end.unsqueeze(-1)
    )
    distance = 1 - iou
    largest = distance.masked_fill(~valid.unsqueeze(1), float("-inf"))
    score = 1 - distance / largest.amax(dim=(1, 2), keepdim=True) + 1e-2
    cost = -score * DISTANCE_COST_WEIGHT + focal_cost(predictions[..., 1]).unsqueeze(-1)
    return cost, clrernet_lane_iou(pred_xs, target_xs, CLRERNET_WIDTH)


@torch.no_grad()
def assign(
    predictions: Tensor,
    targets: Tensor,
    valid: Tensor,
    img_w: int,
    img_h: int,
    lane_iou_cost: bool = False,
    unique_assignment: bool = False,
) -> tuple[Tensor, Tensor]:
    """Match priors to ground-truth lanes.

    Args:
        predictions: (B, N, 6 + P) one stage's predictions (xs / (img_w - 1)).
        targets: (B, G, 6 + P) ground-truth rows (xs in pixels), padded to G lanes.
        valid: (B, G) bool, True for real ground-truth rows.

    Returns:
        matched: (B, N) bool, priors assigned to some lane.
        gt_index: (B, N) long, the lane each matched prior is trained towards (0 if unmatched).
    """
    predictions, targets = predictions.float(), targets.float()
    if lane_iou_cost:
        cost, iou = clrernet_cost(predictions, targets, valid, img_w)
    else:
        cost, iou = clrnet_cost(predictions, targets, valid, img_w, img_h)
    valid_pairs = valid.unsqueeze(1)
    top = iou.clamp(min=0).topk(NUM_CANDIDATES, dim=1).values  # (B, k, G)
    dynamic_k = top.sum(1).int().clamp(min=1)  # (B, G)

    # Rank of each prior in each lane's cost order; a lane takes the ranks below its k.
    order = cost.argsort(dim=1, stable=True)
    positions = torch.arange(cost.shape[1], device=cost.device).view(1, -1, 1).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)
    chosen = (ranks < dynamic_k.unsqueeze(1)) & valid_pairs  # (B, N, G)

    contested = chosen.sum(-1) > 1
    num_lanes = cost.shape[-1]
    cheapest = F.one_hot(cost.masked_fill(~valid_pairs, float("inf")).argmin(-1), num_lanes)
    if unique_assignment:
        fixed = cheapest.bool()
    else:
        first_lane = F.one_hot(valid.int().argmax(-1), num_lanes).unsqueeze(1).bool()
        fixed = (chosen & ~first_lane) | cheapest.bool()
    chosen = torch.where(contested.unsqueeze(-1), fixed, chosen)
    return chosen.any(-1), chosen.to(torch.uint8).argmax(-1)
