"""CLRNet lane detector (and its CLRerNet variant): model, checkpoint loading, training
targets, the released checkpoints.

``PLUGIN`` is how the launcher reaches it (src/models/plugin.py).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from src.models.common.resnet import RESNET_SPECS
from src.models.common.weights import CheckpointMismatchError, LoadReport
from src.models.plugin import ModelPlugin

from .config import CLRNetConfig
from .model import DLA34_NAME, FEATURE_CHANNELS, FPN_LEVELS, CLRNet
from .released import RELEASES, fetch_release
from .targets import lane_targets
from .weights import load_weights

# Input sizes must be multiples of the largest feature stride (the FPN's top level).
LARGEST_STRIDE = 32


def decode_spec(model: nn.Module) -> dict[str, Any]:
    """What decode_np.decode_lanes needs besides the predictions (decode.json of an export)."""
    return {
        "img_w": int(model.img_w),  # xs are normalised by the input width - 1
        "conf_threshold": float(model.conf_threshold),
        "nms_thres": float(model.nms_thres),
        "max_lanes": int(model.max_lanes),
    }


def config_problems(cfg: Any) -> list[str]:
    """What CLRNet's constructor would refuse, said with the config keys before any work."""
    problems = [
        f"model.{side}={getattr(cfg, side)} (dataset.{side}) must be a multiple of "
        f"{LARGEST_STRIDE}, the largest feature stride"
        for side in ("img_w", "img_h")
        if getattr(cfg, side) % LARGEST_STRIDE
    ]
    if not 1 <= cfg.refine_layers <= FPN_LEVELS:
        problems.append(f"model.refine_layers={cfg.refine_layers} must be 1..{FPN_LEVELS}")
    if cfg.fc_hidden_dim != FEATURE_CHANNELS:
        problems.append(
            f"model.fc_hidden_dim={cfg.fc_hidden_dim} must equal the FPN width {FEATURE_CHANNELS}"
        )
    if cfg.num_seg_classes is not None and cfg.num_seg_classes < cfg.max_lanes + 1:
        problems.append(
            f"model.num_seg_classes={cfg.num_seg_classes} must be at least model.max_lanes + 1"
            f" = {cfg.max_lanes + 1} (lane k is drawn with class k + 1)"
        )
    return problems


PLUGIN = ModelPlugin(
    name="clrnet",
    model_class="src.models.clrnet.CLRNet",
    schema=CLRNetConfig,
    training_targets=lane_targets,
    load_weights=load_weights,
    onnx_decoder="src.models.clrnet.decode_np",
    decode_spec=decode_spec,
    choices={"backbone": (*RESNET_SPECS, DLA34_NAME)},
    config_problems=config_problems,
    released_weights=fetch_release,
    # int8: backbone and neck (most of the arithmetic) as one int8 graph, the head in fp32. Its
    # ROIGather convolves with transposed weights (src/models/clrnet/roi_gather.py), which the
    # quantizer's convolution + BatchNorm folding cannot read; its outputs place the lanes anyway.
    int8_scope=("backbone", "neck"),
)

__all__ = [
    "PLUGIN",
    "RELEASES",
    "CLRNet",
    "CLRNetConfig",
    "CheckpointMismatchError",
    "LoadReport",
    "lane_targets",
    "load_weights",
]
