"""CLRNet ("Cross Layer Refinement Network", CVPR 2022; Turoad/CLRNet): ResNet-18/34 or DLA-34
backbone, FPN, and a head that refines 192 learnable lane priors over three pyramid levels.

``model(img)`` in eval mode returns the last stage's predictions (B, num_priors, 6 + P) with rows
``[bg logit, fg logit, start_y, start_x, theta, length, P xs bottom -> top]`` in the reference's
units (``priors.py``); ``model.decode(...)`` turns them into lanes (``decode_np.py``). In train
mode ``model(img, gt_lane=..., seg=...)`` (what ``targets.lane_targets`` returns per image,
stacked) returns the weighted losses (``losses.py``).

CLRerNet (hirotomusiker/CLRerNet) is this model with ``lane_iou_cost`` and ``lane_iou_loss`` on
(LaneIoU with CLRerNet's widths in the assignment and the loss), ``unique_assignment`` (its
2025 fix of the multi-match quirk; its published numbers predate it) and
``eval_priors_from_embeddings`` (it has no prior buffers, which matters with EMA weights); its
recipe also uses iou_loss_weight 4, EMA weights and the DLA-34 backbone (``dla.py``). Its own
checkpoints do not load here (mmdet layout; it samples prior features bottom -> top, CLRNet top
-> bottom). Defaults reproduce the reference CLRNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from src.lane import Lane
from src.models.common.imagenet import load_pretrained_backbone
from src.models.common.resnet import RESNET_SPECS, ResNet

from .decode import decode_predictions
from .dla import DLA34
from .head import CLRHead
from .losses import LOSS_SETTINGS, CLRNetLoss
from .neck import FPN

# The FPN width; ROIGather's attention needs fc_hidden_dim to equal it.
FEATURE_CHANNELS = 64
FPN_LEVELS = 3
DLA34_NAME = "dla34"


class CLRNet(nn.Module):
    """The CLRNet detector. Input: RGB float in [0, 1] (pixel / 255, no normalisation),
    (B, 3, img_h, img_w), the original image cut from row ``cut_height`` down and resized.

    ``num_seg_classes`` (default max_lanes + 1) sizes the auxiliary segmentation (7 in the
    reference's TuSimple configs); ``seg_bg_weight`` weights its background class.
    ``unique_assignment`` fixes the reference's multi-match quirk (``assign.py``);
    ``eval_priors_from_embeddings`` evaluates with priors from the embeddings (``head.py``).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        img_w: int = 800,
        img_h: int = 320,
        num_points: int = 72,
        max_lanes: int = 4,
        num_priors: int = 192,
        refine_layers: int = 3,
        sample_points: int = 36,
        fc_hidden_dim: int = 64,
        conf_threshold: float = 0.4,
        nms_thres: float = 50.0,
        cls_loss_weight: float = 2.0,
        xyt_loss_weight: float = 0.2,
        iou_loss_weight: float = 2.0,
        seg_loss_weight: float = 1.0,
        pretrained_backbone: str | None = None,
        num_seg_classes: int | None = None,
        seg_bg_weight: float = 0.4,
        lane_iou_cost: bool = False,
        lane_iou_loss: bool = False,
        unique_assignment: bool = False,
        eval_priors_from_embeddings: bool = False,
    ) -> None:
        super().__init__()
        num_seg_classes = num_seg_classes or max_lanes + 1
        _check_arguments(backbone, img_w, img_h, refine_layers, fc_hidden_dim)
        _check_seg_classes(num_seg_classes, max_lanes)
        self.img_w, self.img_h = img_w, img_h
        self.num_points = num_points
        self.max_lanes = max_lanes
        self.conf_threshold = conf_threshold
        self.nms_thres = nms_thres

        self.backbone = DLA34() if backbone == DLA34_NAME else ResNet(backbone)
        self.neck = FPN(self.backbone.out_channels, FEATURE_CHANNELS)
        self.head = CLRHead(
            img_w=img_w,
            img_h=img_h,
            num_points=num_points,
            num_priors=num_priors,
            refine_layers=refine_layers,
            sample_points=sample_points,
            fc_hidden_dim=fc_hidden_dim,
            in_channels=FEATURE_CHANNELS,
            num_seg_classes=num_seg_classes,
            seg_bg_weight=seg_bg_weight,
            eval_priors_from_embeddings=eval_priors_from_embeddings,
        )
        settings = locals()
        self.criterion = CLRNetLoss(
            img_w, img_h, num_points, **{name: settings[name] for name in LOSS_SETTINGS}
        )
        if pretrained_backbone:
            load_pretrained_backbone(self.backbone, pretrained_backbone)
        self.set_memory_format(torch.channels_last)

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Convolution layout for weights and input. NHWC (``torch.channels_last``, the default)
        is faster on the CPU (oneDNN) and suits tensor cores on CUDA; NCHW
        (``torch.contiguous_format``) is the reference's, float32 results then match it to the
        last bits (``tests/models/test_clrnet_fidelity.py``)."""
        self.memory_format = self.head.memory_format = memory_format
        self.to(memory_format=memory_format)

    def forward(
        self, img: Tensor, gt_lane: Tensor | None = None, seg: Tensor | None = None
    ) -> Tensor | dict[str, Tensor]:
        """Eval mode: predictions (B, num_priors, 6 + P). Train mode: a dict with the total
        ``loss`` and the weighted ``cls_loss``, ``reg_xytl_loss``, ``iou_loss``, ``seg_loss``;
        needs ``gt_lane`` (B, max_lanes, 6 + P) and ``seg`` (B, img_h, img_w)."""
        img = img.contiguous(memory_format=self.memory_format)
        feats = self.neck(self.backbone(img))  # strides 8, 16, 32
        if not self.training:
            return self.head(feats)[0][-1]
        if gt_lane is None or seg is None:
            raise ValueError("training-mode forward needs gt_lane and seg")
        stage_predictions, seg_logits = self.head(feats)
        return self.criterion(
            stage_predictions, seg_logits, gt_lane, seg, self.head.seg_decoder.class_weights
        )

    def decode(
        self, predictions: Tensor, cut_heights: Sequence[int], ori_heights: Sequence[int]
    ) -> list[list[Lane]]:
        """Lanes per image (``decode_np.decode_lanes``), with this model's threshold, NMS
        distance and lane limit."""
        return decode_predictions(
            predictions,
            cut_heights,
            ori_heights,
            img_w=self.img_w,
            conf_threshold=self.conf_threshold,
            nms_thres=self.nms_thres,
            max_lanes=self.max_lanes,
        )


def _check_arguments(
    backbone: str, img_w: int, img_h: int, refine_layers: int, fc_hidden_dim: int
) -> None:
    if backbone not in (*RESNET_SPECS, DLA34_NAME):
        raise ValueError(
            f"unknown CLRNet backbone {backbone!r}; choose one of "
            f"{sorted((*RESNET_SPECS, DLA34_NAME))} (the reference's ResNet-101 is not ported)"
        )
    if img_w % 32 or img_h % 32:
        raise ValueError(f"img_w and img_h must be multiples of 32, got {img_w}x{img_h}")
    if not 1 <= refine_layers <= FPN_LEVELS:
        raise ValueError(f"refine_layers must be 1..{FPN_LEVELS}, got {refine_layers}")
    if fc_hidden_dim != FEATURE_CHANNELS:
        raise ValueError(
            f"fc_hidden_dim must equal the FPN width {FEATURE_CHANNELS} (ROIGather attends "
            f"from prior features to feature-map keys of that width), got {fc_hidden_dim}"
        )


def _check_seg_classes(num_seg_classes: int, max_lanes: int) -> None:
    if num_seg_classes < max_lanes + 1:
        raise ValueError(
            f"num_seg_classes must be at least max_lanes + 1 = {max_lanes + 1} (the targets "
            f"draw lane k with class k + 1), got {num_seg_classes}"
        )
