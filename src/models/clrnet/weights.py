"""Loading weights into CLRNet: the released reference checkpoints (Turoad/CLRNet,
``{"net": {"module." + key: tensor}, "optim": ..., ...}``), this project's checkpoints and bare
state dicts, with every key accounted for (``src/models/common/weights.py``).

Reference keys map by prefix: ``backbone.model.*`` -> ``backbone.*`` (torchvision ResNet names),
``neck.{lateral,fpn}_convs.i.conv.*`` -> ``neck.{lateral,fpn}_convs.i.*`` (mmcv's ConvModule
wrapper dropped) and ``heads.*`` -> ``head.*`` (the head keeps the reference's module names,
mmcv's ``conv`` / ``bn`` included). The head's row tables and the segmentation class weights are
constants recomputed here and checked. ``priors`` / ``priors_on_featmap`` are loaded: evaluation
uses them, and in a trained checkpoint they lag ``prior_embeddings`` by one optimiser step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import nn

from src.models.common.weights import KeyTables, LoadReport, load_checkpoint

REFERENCE_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"backbone\.model\.(.+)", r"backbone.\1"),
    (r"neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)", r"neck.\1.\2.\3"),
    (r"heads\.(.+)", r"head.\1"),
)

# Reference buffers that are constants of the architecture: checked, not loaded.
CONSTANT_KEYS = (
    (r"heads\.sample_x_indexs", lambda m, _: m.get_buffer("head.sample_x_indexs")),
    (r"heads\.prior_feat_ys", lambda m, _: m.get_buffer("head.prior_feat_ys")),
    (r"heads\.prior_ys", lambda m, _: m.get_buffer("head.prior_ys")),
    # The segmentation loss's class weights ([bg_weight, 1, ...], an NLLLoss buffer there).
    (r"heads\.criterion\.weight", lambda m, _: m.get_buffer("head.seg_decoder.class_weights")),
)

CLRNET_KEYS = KeyTables(renames=REFERENCE_KEY_MAP, constants=CONSTANT_KEYS)


def reference_key_to_model_key(key: str) -> str | None:
    """This model's key for a reference key (without ``module.``), or None if it has none."""
    return CLRNET_KEYS.model_key(key)


def load_weights(
    model: nn.Module, source: str | Path | Mapping[str, object], name: str | None = None
) -> LoadReport:
    """Load a reference checkpoint, a project checkpoint or a state dict into ``model``.

    ``source`` is a file path (read with ``torch.load(weights_only=True, map_location="cpu")``)
    or an already loaded object, then ``name`` names it in reports and errors. Every tensor in
    the file must be used or be a matching constant, and every model tensor must be provided;
    otherwise ``CheckpointMismatchError`` lists the missing, unexpected and mis-shaped keys
    before anything is loaded. A TuSimple checkpoint has 7 segmentation classes: build the
    model with ``num_seg_classes=7``.
    """
    return load_checkpoint(model, source, CLRNET_KEYS, name)
