"""The config schema of CLRNet (the fields of ``src.models.clrnet.CLRNet``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CLRNetConfig:
    """conf/model/clrnet*.yaml and clrernet.yaml: the fields of ``CLRNet``; defaults are the
    reference CLRNet-R18 (Turoad/CLRNet, configs/clrnet/clr_resnet18_culane.py).

    CLRerNet (conf/model/clrernet.yaml) is this model with ``lane_iou_cost``, ``lane_iou_loss``,
    ``unique_assignment`` and ``eval_priors_from_embeddings`` on (see src/models/clrnet/model.py).
    """

    _target_: str = "src.models.clrnet.CLRNet"
    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50 | dla34
    # imagenet (fetched once into torch.hub's cache) | a local file | null
    pretrained_backbone: str | None = None
    img_w: int = 800
    img_h: int = 320
    num_points: int = 72
    max_lanes: int = 4
    num_priors: int = 192
    refine_layers: int = 3
    sample_points: int = 36
    fc_hidden_dim: int = 64  # must equal the FPN width, 64
    conf_threshold: float = 0.4  # decoding: score threshold
    nms_thres: float = 50.0  # decoding: lane NMS distance (pixels of the input width)
    cls_loss_weight: float = 2.0
    xyt_loss_weight: float = 0.2
    iou_loss_weight: float = 2.0
    seg_loss_weight: float = 1.0
    num_seg_classes: int | None = None  # null: max_lanes + 1 (the reference's TuSimple: 7)
    seg_bg_weight: float = 0.4
    lane_iou_cost: bool = False  # CLRerNet: LaneIoU assignment cost
    lane_iou_loss: bool = False  # CLRerNet: LaneIoU loss
    unique_assignment: bool = False  # one lane per prior (not in the reference)
    eval_priors_from_embeddings: bool = False  # CLRerNet: priors from the embeddings in eval
