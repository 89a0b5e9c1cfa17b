"""Loading weights into SRLane: reference checkpoints, this project's checkpoints, bare state dicts.

The reference code (passerer/SRLane) saves ``{"net": state_dict}`` from a DataParallel model,
so every key starts with ``module.``. Its key names map to this model's by the explicit table
``REFERENCE_KEY_MAP``; every other reference key is either ignored on purpose (``IGNORED_KEYS``,
with the reason) or a constant buffer that this model recomputes (``CONSTANT_KEYS``), which is
checked against ours. Anything else - a missing, unexpected or mis-shaped tensor, or a constant
that differs - raises ``CheckpointMismatchError``; nothing is loaded silently. The machinery is
``src/models/common/weights.py``, shared with CLRNet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from src.models.common.weights import (
    CheckpointMismatchError,
    KeyTables,
    LoadReport,
    load_checkpoint,
)

# (reference key pattern, this model's key) - applied with re.fullmatch, first match wins.
_STAGE = r"roi_head\.stage_heads\.(\d+)"
REFERENCE_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"backbone\.model\.(.+)", r"backbone.\1"),
    (r"neck\.lateral_convs\.(\d+)\.(weight|bias)", r"neck.convs.\1.\2"),
    (r"rpn_head\.angle_conv\.(\d+)\.weight", r"sketch_head.angle_convs.\1.weight"),
    (_STAGE + r"\.z_embeddings", r"refine_head.stages.\1.level_z"),
    (_STAGE + r"\.gather_fc\.(weight|bias)", r"refine_head.stages.\1.gather.\2"),
    (_STAGE + r"\.shuffle_fc\.(weight|bias)", r"refine_head.stages.\1.shuffle_fc.\2"),
    (
        _STAGE + r"\.segment_attn\.0\.(q_proj|k_proj)\.(weight|bias)",
        r"refine_head.stages.\1.attention.\2.\3",
    ),
    (
        _STAGE + r"\.channel_fc\.0\.([02])\.(weight|bias)",
        r"refine_head.stages.\1.attention_mlp.\2.\3",
    ),
    (_STAGE + r"\.cls_modules\.0\.(weight|bias)", r"refine_head.stages.\1.cls_head.0.\2"),
    (_STAGE + r"\.cls_layers\.(weight|bias)", r"refine_head.stages.\1.cls_head.2.\2"),
    (_STAGE + r"\.reg_modules\.0\.(weight|bias)", r"refine_head.stages.\1.reg_head.0.\2"),
    (_STAGE + r"\.reg_layers\.(weight|bias)", r"refine_head.stages.\1.reg_head.2.\2"),
)

# Reference keys with no counterpart here, and why.
IGNORED_KEYS: tuple[tuple[str, str], ...] = (
    (
        r"rpn_head\.seg_conv\.\d+\.(weight|bias)",
        "auxiliary segmentation branch (training-only, loss weight 0 in the released configs)",
    ),
)


def _row_ys(model: nn.Module) -> Tensor:
    num_points = model.get_buffer("sketch_head.prior_ys").numel()
    return torch.linspace(1, 0, steps=num_points, dtype=torch.float32)


# Reference constant buffers -> how to get this model's value (they are recomputed, not loaded).
CONSTANT_KEYS: tuple[tuple[str, Callable[[nn.Module, re.Match], Tensor]], ...] = (
    (r"rpn_head\.prior_ys", lambda m, _: m.get_buffer("sketch_head.prior_ys")),
    (r"rpn_head\.grid", lambda m, _: m.get_buffer("sketch_head.grid")),
    (r"roi_head\.prior_ys", lambda m, _: _row_ys(m)),
    (
        _STAGE + r"\.sample_x_indexs",
        lambda m, g: m.get_buffer(f"refine_head.stages.{g[1]}.sample_rows"),
    ),
    (
        _STAGE + r"\.prior_feat_ys",
        lambda m, g: m.get_buffer(f"refine_head.stages.{g[1]}.sample_ys"),
    ),
)

SRLANE_KEYS = KeyTables(renames=REFERENCE_KEY_MAP, ignored=IGNORED_KEYS, constants=CONSTANT_KEYS)

__all__ = ["CheckpointMismatchError", "LoadReport", "load_weights", "reference_key_to_model_key"]


def reference_key_to_model_key(key: str) -> str | None:
    """This model's key for a reference key (without ``module.``), or None if it has none."""
    return SRLANE_KEYS.model_key(key)


def load_weights(
    model: nn.Module, source: str | Path | Mapping[str, object], name: str | None = None
) -> LoadReport:
    """Load a reference checkpoint, a project checkpoint or a state dict into ``model``.

    ``source`` is a file path (read with ``torch.load(weights_only=True, map_location="cpu")``)
    or an already loaded object, then ``name`` (e.g. the file it came from) names it in reports
    and errors. Every tensor in the file must be used, ignored on purpose or be a matching
    constant, and every model tensor must be provided; otherwise ``CheckpointMismatchError`` is
    raised before anything is loaded (``src/models/common/weights.py``).
    """
    return load_checkpoint(model, source, SRLANE_KEYS, name)
