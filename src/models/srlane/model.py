"""SRLane ("Sketch and Refine", AAAI 2024): ResNet backbone, channel-mapper neck, sketch head
(angle maps -> straight lane proposals) and refine head (lane features -> logits and offsets).

``model(img)`` in eval mode returns predictions (B, N, 4 + P) with N = 40 proposals and rows
``[2 logits, start_y, length, P normalised xs bottom -> top]``; ``model.decode(...)`` turns them
into lanes. In train mode ``model(img, gt_lane=..., gt_angle=...)`` returns the losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.lane import Lane
from src.models.common.imagenet import load_pretrained_backbone
from src.models.common.resnet import ResNet

from .decode import decode_predictions
from .losses import LOSS_SETTINGS, SRLaneLoss
from .neck import ChannelMapper
from .refine_head import RefineHead
from .sketch_head import SketchHead
from .targets import STRIDES


class SRLane(nn.Module):
    """The SRLane detector. Constructor arguments are the fields of ``src.config.ModelConfig``.

    Input: RGB float in [0, 1] (pixel / 255, no normalisation), (B, 3, img_h, img_w), with the
    original image cut from row ``cut_height`` down and resized to img_w x img_h.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained_backbone: str | None = None,
        img_w: int = 800,
        img_h: int = 320,
        num_points: int = 72,
        max_lanes: int = 4,
        hidden_dim: int = 64,
        angle_map_size: Sequence[int] = (4, 10),
        z_mean: float = 0.9269,
        z_std: float = 0.2379,
        sample_points: int = 36,
        num_groups: int = 6,
        refine_layers: int = 1,
        conf_threshold: float = 0.4,
        nms_thres: float = 50.0,
        angle_loss_weight: float = 5.0,
        cls_loss_weight: float = 2.0,
        l1_loss_weight: float = 0.2,
        iou_loss_weight: float = 2.0,
        angle_level_weights: Sequence[float] = (0.2, 0.2, 1.0),
        angle_loss_reference_quirk: bool = True,
        assign_on_priors: bool = False,
        iou_loss_target_width: bool = False,
    ) -> None:
        super().__init__()
        if img_w % 32 or img_h % 32:
            raise ValueError(f"img_w and img_h must be multiples of 32, got {img_w}x{img_h}")
        self.img_w, self.img_h = img_w, img_h
        self.num_points = num_points
        self.max_lanes = max_lanes
        self.conf_threshold = conf_threshold
        self.nms_thres = nms_thres
        angle_map_size = [int(s) for s in angle_map_size]

        self.backbone = ResNet(backbone)
        self.neck = ChannelMapper(self.backbone.out_channels, hidden_dim)
        self.sketch_head = SketchHead(hidden_dim, len(STRIDES), num_points, angle_map_size)
        self.refine_head = RefineHead(
            refine_layers,
            in_channels=hidden_dim,
            hidden_dim=3 * hidden_dim,
            num_points=num_points,
            sample_points=sample_points,
            num_groups=num_groups,
            num_levels=len(STRIDES),
            z_mean=z_mean,
            z_std=z_std,
        )
        # The loss settings keep their names in SRLaneLoss; the reference takes the assignment's
        # candidate count from angle_map_size[0].
        settings = locals()
        loss_settings = {name: settings[name] for name in LOSS_SETTINGS}
        self.criterion = SRLaneLoss(img_w, img_h, num_points, angle_map_size[0], **loss_settings)
        if pretrained_backbone:
            load_pretrained_backbone(self.backbone, pretrained_backbone)
        # NHWC convolutions are ~25 % faster on the CPU (oneDNN) and suit tensor cores on CUDA;
        # forward() converts the input to match.
        self.to(memory_format=torch.channels_last)

    def forward(
        self,
        img: Tensor,
        gt_lane: Tensor | None = None,
        gt_angle: Sequence[Tensor] | None = None,
    ) -> Tensor | dict[str, Tensor]:
        """Eval mode: predictions (B, N, 4 + P). Train mode: a dict with the total ``loss`` and
        the weighted ``angle_loss``, ``cls_loss``, ``l1_loss``, ``iou_loss``; needs ``gt_lane``
        (B, max_lanes, 4 + P) and ``gt_angle`` (maps for strides 8, 16, 32)."""
        img = img.contiguous(memory_format=torch.channels_last)
        feats = self.neck(self.backbone(img))  # strides 8, 16, 32
        if not self.training:
            coarse_angle = self.sketch_head.angle_maps(feats[-1:])[0]
            priors = self.sketch_head.proposals(coarse_angle)
            return self.refine_head(feats, priors)[-1]
        if gt_lane is None or gt_angle is None:
            raise ValueError("training-mode forward needs gt_lane and gt_angle")
        if len(gt_angle) != len(STRIDES):
            raise ValueError(f"gt_angle needs one map per stride {STRIDES}, got {len(gt_angle)}")
        angles = self.sketch_head.angle_maps(feats)
        priors = self.sketch_head.proposals(angles[-1])
        stage_predictions = self.refine_head(feats, priors)
        return self.criterion(angles, stage_predictions, gt_angle, gt_lane, priors)

    def decode(
        self,
        predictions: Tensor,
        cut_heights: Sequence[int],
        ori_heights: Sequence[int],
    ) -> list[list[Lane]]:
        """Lanes per image (see ``decode.decode_predictions``), with this model's threshold,
        NMS distance and lane limit."""
        return decode_predictions(
            predictions,
            cut_heights,
            ori_heights,
            img_w=self.img_w,
            conf_threshold=self.conf_threshold,
            nms_thres=self.nms_thres,
            max_lanes=self.max_lanes,
        )
