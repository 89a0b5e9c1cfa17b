"""SRLane lane detector: model, checkpoint loading and training targets.

``PLUGIN`` is how the launcher reaches it (src/models/plugin.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from src.models.common.resnet import RESNET_SPECS
from src.models.plugin import ModelPlugin, Targets

from .config import SRLaneConfig
from .model import SRLane
from .targets import STRIDES, lane_targets
from .weights import CheckpointMismatchError, LoadReport, load_weights


def training_targets(
    lanes: Sequence[np.ndarray], img_w: int, img_h: int, num_points: int, max_lanes: int
) -> Targets:
    """``lane_targets`` by name: the keyword arguments of SRLane's training forward."""
    gt_lane, gt_angle = lane_targets(lanes, img_w, img_h, num_points, max_lanes)
    return {"gt_lane": gt_lane, "gt_angle": gt_angle}


def decode_spec(model: nn.Module) -> dict[str, Any]:
    """What decode_np.decode_lanes needs besides the predictions (decode.json of an export)."""
    return {
        "img_w": int(model.img_w),  # xs are normalised by the input width
        "conf_threshold": float(model.conf_threshold),
        "nms_thres": float(model.nms_thres),
        "max_lanes": int(model.max_lanes),
    }


def config_problems(cfg: Any) -> list[str]:
    """The input size must be a multiple of the largest feature stride (the proposal grid)."""
    return [
        f"model.{side}={getattr(cfg, side)} (dataset.{side}) must be a multiple of "
        f"{max(STRIDES)}, the largest feature stride"
        for side in ("img_w", "img_h")
        if getattr(cfg, side) % max(STRIDES)
    ]


PLUGIN = ModelPlugin(
    name="srlane",
    model_class="src.models.srlane.SRLane",
    schema=SRLaneConfig,
    training_targets=training_targets,
    load_weights=load_weights,
    onnx_decoder="src.models.srlane.decode_np",
    decode_spec=decode_spec,
    choices={"backbone": tuple(RESNET_SPECS)},
    config_problems=config_problems,
    # int8: the angle convolution (64 -> 1 channel, then sigmoid -> tan) places every proposal,
    # its int8 rounding moves whole lanes; the regression head's last layer writes the x offsets
    # in fractions of the image width, where one int8 step is several pixels.
    int8_fp32_modules=("sketch_head.angle_convs.0", "refine_head.stages.0.reg_head.2"),
)

__all__ = [
    "PLUGIN",
    "CheckpointMismatchError",
    "LoadReport",
    "SRLane",
    "SRLaneConfig",
    "lane_targets",
    "load_weights",
]
