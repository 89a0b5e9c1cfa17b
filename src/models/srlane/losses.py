"""SRLane training losses: angle-map L1, softmax focal classification, smooth-L1 on start/length,
LaneIoU on the x coordinates, with dynamic top-k assignment.

All maths runs in float32 with autocast disabled, so losses stay finite under fp16/bf16 mixed
precision. The returned parts are already multiplied by their weights; ``loss`` is their sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from src.models.common.focal import softmax_focal_loss

from .assign import dynamic_topk_assign
from .lane_iou import lane_iou

__all__ = ["LOSS_SETTINGS", "SRLaneLoss", "angle_loss", "softmax_focal_loss"]


def angle_loss(
    pred_angles: Sequence[Tensor],
    gt_angles: Sequence[Tensor],
    level_weights: Sequence[float],
    reference_quirk: bool = True,
) -> Tensor:
    """Masked L1 between predicted and target angle maps (levels fine -> coarse); cells whose
    target is 0 are ignored. Per level: sum of |error| over target cells / (count + 1e-4).

    With ``reference_quirk`` the running sum is multiplied by each level's weight in turn, as
    the reference does: ``((l0 * w0 + l1) * w1 + l2) * w2`` (0.04 / 0.2 / 1.0 for the nominal
    [0.2, 0.2, 1.0]). Without it: ``sum(w_i * l_i)``.
    """
    total = pred_angles[0].new_zeros((), dtype=torch.float32)
    for pred, target, weight in zip(pred_angles, gt_angles, level_weights, strict=True):
        target = target.float()
        mask = target > 0
        level = ((pred.float() - target).abs() * mask).sum() / (mask.sum() + 1e-4)
        total = (total + level) * weight if reference_quirk else total + weight * level
    return total


# SRLane's (and ModelConfig's) loss settings, passed to SRLaneLoss by name.
LOSS_SETTINGS = (
    "angle_loss_weight",
    "cls_loss_weight",
    "l1_loss_weight",
    "iou_loss_weight",
    "angle_level_weights",
    "angle_loss_reference_quirk",
    "assign_on_priors",
    "iou_loss_target_width",
)


class SRLaneLoss:
    """Computes the weighted loss parts from the model outputs and the batch targets."""

    def __init__(
        self,
        img_w: int,
        img_h: int,
        num_points: int,
        num_candidates: int,
        angle_loss_weight: float,
        cls_loss_weight: float,
        l1_loss_weight: float,
        iou_loss_weight: float,
        angle_level_weights: Sequence[float],
        angle_loss_reference_quirk: bool = True,
        assign_on_priors: bool = False,
        iou_loss_target_width: bool = False,
    ) -> None:
        """The loss settings (``LOSS_SETTINGS``) are named as the fields of
        ``src.config.ModelConfig``, where their defaults are."""
        self.img_w = img_w
        self.n_strips = num_points - 1
        self.delta_y = img_h / self.n_strips  # row spacing in input pixels
        self.num_candidates = num_candidates
        self.weights = {
            "angle_loss": angle_loss_weight,
            "cls_loss": cls_loss_weight,
            "l1_loss": l1_loss_weight,
            "iou_loss": iou_loss_weight,
        }
        self.angle_level_weights = [float(w) for w in angle_level_weights]
        self.angle_reference_quirk = angle_loss_reference_quirk
        self.assign_on_priors = assign_on_priors
        self.iou_target_width = iou_loss_target_width

    def __call__(
        self,
        pred_angles: Sequence[Tensor],
        stage_predictions: Sequence[Tensor],
        gt_angle: Sequence[Tensor],
        gt_lane: Tensor,
        priors: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``pred_angles`` / ``gt_angle``: per level (B, H, W), fine -> coarse.
        ``stage_predictions``: per refine stage (B, N, 4 + P). ``gt_lane``: (B, G, 4 + P).
        ``priors``: the sketch proposals (B, N, 4 + P), used by ``assign_on_priors``."""
        with torch.autocast(gt_lane.device.type, enabled=False):
            parts = {
                "angle_loss": angle_loss(
                    pred_angles, gt_angle, self.angle_level_weights, self.angle_reference_quirk
                )
            }
            targets = gt_lane.float()
            roi = [self.roi_losses(p.float(), targets, priors) for p in stage_predictions]
            scale = gt_lane.shape[0] * len(stage_predictions)
            for name in ("cls_loss", "l1_loss", "iou_loss"):
                parts[name] = sum(r[name] for r in roi) / scale
            weighted = {name: value * self.weights[name] for name, value in parts.items()}
            weighted["loss"] = sum(weighted.values())
        return weighted

    def roi_losses(
        self, predictions: Tensor, targets: Tensor, priors: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Classification and regression losses of one stage, summed over the batch (each image
        contributes its own normalised loss, as the reference's per-image loop does)."""
        valid = targets[..., 1] == 1  # (B, G)
        num_gt = valid.sum(-1)  # (B,)
        # start_y and length in rows, xs in pixels
        scaled = torch.cat(
            (
                predictions[..., :2],
                predictions[..., 2:4] * self.n_strips,
                predictions[..., 4:] * self.img_w,
            ),
            dim=-1,
        )
        matching = scaled
        if self.assign_on_priors and priors is not None:
            # Geometry of the sketch proposals, not of the refined lanes, decides the matching.
            matching = torch.cat((scaled[..., :4], priors[..., 4:].float() * self.img_w), dim=-1)
        matched, gt_index = dynamic_topk_assign(
            matching, targets, valid, self.img_w, self.delta_y, self.num_candidates
        )
        count = matched.sum(-1)  # (B,)
        has_match = count > 0
        matched_f = matched.float()

        # Classification over all proposals; an image without lanes is not normalised.
        focal = softmax_focal_loss(scaled[..., :2], matched.long()).sum(-1)
        cls = torch.where(num_gt > 0, focal / num_gt.clamp(min=1), focal).sum()

        # The ground-truth row of every proposal (meaningful where matched).
        matched_targets = targets.gather(
            1, gt_index.unsqueeze(-1).expand(-1, -1, targets.shape[-1])
        )
        pred_yl = scaled[..., 2:4]
        with torch.no_grad():
            target_yl = matched_targets[..., 2:4].clone()
            pred_start = pred_yl[..., 0].round().clamp(0, self.n_strips)
            target_yl[..., 1] -= pred_start - target_yl[..., 0].round()
        l1 = F.smooth_l1_loss(pred_yl, target_yl, reduction="none", beta=1.0).sum(-1)
        l1 = (l1 * matched_f).sum(-1) / (2 * count.clamp(min=1))

        iou = lane_iou(
            scaled[..., 4:],
            matched_targets[..., 4:],
            self.img_w,
            7.5,
            self.delta_y,
            pred_width_from_target=self.iou_target_width,
        )
        iou = ((1 - iou) * matched_f).sum(-1) / count.clamp(min=1)

        zero = torch.zeros_like(l1)
        return {
            "cls_loss": cls,
            "l1_loss": torch.where(has_match, l1, zero).sum(),
            "iou_loss": torch.where(has_match, iou, zero).sum(),
        }
