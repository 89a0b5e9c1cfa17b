"""CLRNet's training losses: softmax focal classification, smooth-L1 on (start_y, start_x,
theta, length), Line IoU on the xs (or CLRerNet's LaneIoU), and the auxiliary segmentation.

Per stage and image (batched here; the reference loops): priors are matched by ``assign.assign``;
the focal loss over all priors is divided by the image's lane count (not divided without lanes);
the regression compares ``[start_y * 71, start_x * (img_w - 1), theta * 180, length * 71]`` with
the target ``[start_y * 71, start_x (pixels), theta * 180, length - (predicted start - target
start)]`` (the length target re-measured from the predicted start row) and is averaged over the
matched priors and the 4 terms; the IoU loss is the mean of 1 - IoU over the matched priors.
Each part is summed over images and stages and divided by batch size * stages. The segmentation
loss is the class-weighted NLL of the log-softmax (ignore label 255). All maths runs in float32
with autocast off; returned parts are already multiplied by their weights, ``loss`` is their sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from src.models.common.focal import softmax_focal_loss

from .assign import CLRERNET_WIDTH, LINE_IOU_RADIUS, assign
from .lane_iou import clrernet_lane_iou, line_iou

IGNORE_LABEL = 255

# The loss settings of the model's constructor, passed to CLRNetLoss by name.
LOSS_SETTINGS = (
    "cls_loss_weight",
    "xyt_loss_weight",
    "iou_loss_weight",
    "seg_loss_weight",
    "lane_iou_cost",
    "lane_iou_loss",
    "unique_assignment",
)


class CLRNetLoss:
    """Weighted loss parts from the stage predictions, the segmentation logits and the targets."""

    def __init__(
        self,
        img_w: int,
        img_h: int,
        num_points: int,
        cls_loss_weight: float = 2.0,
        xyt_loss_weight: float = 0.2,
        iou_loss_weight: float = 2.0,
        seg_loss_weight: float = 1.0,
        lane_iou_cost: bool = False,
        lane_iou_loss: bool = False,
        unique_assignment: bool = False,
    ) -> None:
        self.img_w, self.img_h = img_w, img_h
        self.n_strips = num_points - 1
        self.weights = {
            "cls_loss": cls_loss_weight,
            "reg_xytl_loss": xyt_loss_weight,
            "iou_loss": iou_loss_weight,
            "seg_loss": seg_loss_weight,
        }
        self.lane_iou_cost = lane_iou_cost
        self.lane_iou_loss = lane_iou_loss
        self.unique_assignment = unique_assignment

    def __call__(
        self,
        stage_predictions: Sequence[Tensor],
        seg_logits: Tensor,
        gt_lane: Tensor,
        seg: Tensor,
        seg_class_weights: Tensor,
    ) -> dict[str, Tensor]:
        """``stage_predictions``: per stage (B, N, 6 + P); ``seg_logits`` (B, K, H, W);
        ``gt_lane`` (B, G, 6 + P); ``seg`` (B, H, W) class indices (255 = ignore)."""
        with torch.autocast(gt_lane.device.type, enabled=False):
            targets = gt_lane.float()
            stages = [self.stage_losses(p.float(), targets) for p in stage_predictions]
            scale = gt_lane.shape[0] * len(stage_predictions)
            parts = {
                name: sum(s[name] for s in stages) / scale
                for name in ("cls_loss", "reg_xytl_loss", "iou_loss")
            }
            parts["seg_loss"] = F.nll_loss(
                F.log_softmax(seg_logits.float(), dim=1),
                seg.long(),
                weight=seg_class_weights.float(),
                ignore_index=IGNORE_LABEL,
            )
            weighted = {name: value * self.weights[name] for name, value in parts.items()}
            weighted["loss"] = sum(weighted.values())
        return weighted

    def stage_losses(self, predictions: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Unweighted classification, regression and IoU losses of one stage, summed over the
        batch."""
        valid = targets[..., 1] == 1  # (B, G)
        num_gt = valid.sum(-1)
        matched, gt_index = assign(
            predictions,
            targets,
            valid,
            self.img_w,
            self.img_h,
            self.lane_iou_cost,
            self.unique_assignment,
        )
        count = matched.sum(-1)
        weight = matched.float()

        focal = softmax_focal_loss(predictions[..., :2], matched.long()).sum(-1)
        cls = torch.where(num_gt > 0, focal / num_gt.clamp(min=1), focal).sum()

        matched_targets = targets.gather(
            1, gt_index.unsqueeze(-1).expand(-1, -1, targets.shape[-1])
        )
        n_strips, width = self.n_strips, self.img_w - 1
        scale = predictions.new_tensor([n_strips, width, 180, n_strips])
        pred_yxtl = predictions[..., 2:6] * scale
        with torch.no_grad():
            target_yxtl = matched_targets[..., 2:6].clone()
            pred_start = (predictions[..., 2] * n_strips).round().long().clamp(0, n_strips)
            target_start = (matched_targets[..., 2] * n_strips).round().long()
            target_yxtl[..., 3] -= pred_start - target_start
            target_yxtl[..., 0] *= n_strips
            target_yxtl[..., 2] *= 180
        reg = F.smooth_l1_loss(pred_yxtl, target_yxtl, reduction="none").sum(-1)
        reg = (reg * weight).sum(-1) / (4 * count.clamp(min=1))

        pred_xs, target_xs = predictions[..., 6:] * width, matched_targets[..., 6:]
        if self.lane_iou_loss:
            iou = clrernet_lane_iou(pred_xs / self.img_w, target_xs / self.img_w, CLRERNET_WIDTH)
        else:
            iou = line_iou(pred_xs, target_xs, self.img_w, LINE_IOU_RADIUS)
        iou = ((1 - iou) * weight).sum(-1) / count.clamp(min=1)

        has_match = count > 0
        zero = torch.zeros_like(reg)
        return {
            "cls_loss": cls,
            "reg_xytl_loss": torch.where(has_match, reg, zero).sum(),
            "iou_loss": torch.where(has_match, iou, zero).sum(),
        }
