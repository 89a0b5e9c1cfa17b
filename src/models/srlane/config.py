"""The config schema of SRLane (the fields of ``src.models.srlane.SRLane``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SRLaneConfig:
    """conf/model/srlane*.yaml: the fields of ``SRLane``; defaults are the reference R18 model.

    Two switches are not in the reference, for training from scratch (README "Default run"):
    ``assign_on_priors`` matches ground-truth lanes to proposals by the LaneIoU of the sketch
    proposals instead of the refined lanes (from scratch, the reference's matching settles on a
    few proposal slots far from the lanes and regresses hundreds of pixels from them), and
    ``iou_loss_target_width`` widens predicted points by the target's slope instead of the
    prediction's own (so a jagged prediction still gets a gradient). The reference re-multiplies
    the running angle-loss sum at each level (``angle_loss_reference_quirk``): effective level
    weights 0.04 / 0.2 / 1.0.
    """

    _target_: str = "src.models.srlane.SRLane"
    backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50
    # imagenet (torchvision's, fetched once into torch.hub's cache) | a local file | null
    pretrained_backbone: str | None = None
    img_w: int = 800
    img_h: int = 320
    num_points: int = 72
    max_lanes: int = 4
    hidden_dim: int = 64
    angle_map_size: list[int] = field(default_factory=lambda: [4, 10])
    z_mean: float = 0.9269
    z_std: float = 0.2379
    sample_points: int = 36
    num_groups: int = 6
    refine_layers: int = 1
    conf_threshold: float = 0.4  # decoding: score threshold
    nms_thres: float = 50.0  # decoding: lane NMS distance (pixels of the input width)
    angle_loss_weight: float = 5.0
    cls_loss_weight: float = 2.0
    l1_loss_weight: float = 0.2
    iou_loss_weight: float = 2.0
    angle_level_weights: list[float] = field(default_factory=lambda: [0.2, 0.2, 1.0])
    angle_loss_reference_quirk: bool = True  # false: the nominal angle_level_weights
    assign_on_priors: bool = False  # not in the reference (see above)
    iou_loss_target_width: bool = False  # not in the reference (see above)
