"""What the launcher needs from a model: the one interface between a model package
(src/models/<name>/) and the engine, the evaluator, export and the data pipeline.

A model package exports a ``ModelPlugin`` named ``PLUGIN`` and is listed in
src/models/registry.py; its config group entry ``conf/model/<name>.yaml`` starts from the schema
``<name>_schema``. The model class (``plugin.model_class``, the config's ``_target_``) is an
``nn.Module`` built from the schema's fields, with:

- ``model(img)`` in eval mode: raw predictions (B, N, D), a tensor that ONNX export keeps;
- ``model(img, **targets)`` in train mode: a dict of weighted losses, ``"loss"`` the total, where
  ``targets`` are the collated outputs of ``plugin.training_targets``;
- ``model.decode(predictions, cut_heights, ori_heights)``: per image a list of src.lane.Lane in
  original-image normalised coordinates;
- attributes ``img_w``, ``img_h``, ``num_points``, ``max_lanes``.

Nothing outside src/models/<name>/ names a model: the launcher reaches it through its plugin,
looked up by the config's ``_target_`` (src/models/registry.py ``plugin_for``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

# Targets of one training image: named numpy arrays (or lists of arrays, one per feature
# level), the keyword arguments of the model's training forward after collation.
Targets = Mapping[str, np.ndarray | Sequence[np.ndarray]]


@dataclass(frozen=True)
class ModelPlugin:
    """How the launcher builds, feeds, loads and deploys one model."""

    name: str  # the config group option, conf/model/<name>.yaml
    model_class: str  # import path, the config's _target_
    schema: type  # the dataclass conf/model/<name>*.yaml is validated against
    # (lanes in input pixels, img_w, img_h, num_points, max_lanes) -> Targets; a module-level
    # function, so that DataLoader workers can unpickle it.
    training_targets: Callable[..., Targets]
    # (model, file or state dict, name=...) -> a report; refuses a file that does not fit.
    load_weights: Callable[..., Any]
    # Module of the numpy-only decoder a deployment of the ONNX export runs:
    # decode_args(spec) and decode_lanes(predictions, cut_heights, ori_heights, **args).
    onnx_decoder: str
    # (model) -> the decode.json fields the onnx decoder needs.
    decode_spec: Callable[[nn.Module], dict[str, Any]]
    # Allowed values of the schema's string fields, checked with the config (before any work).
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Modules (names in model.named_modules()) evaluation.int8 keeps in fp32: where one int8 step
    # moves whole lanes (src/inference/quantize.py).
    int8_fp32_modules: Sequence[str] = ()
    # The leading submodules evaluation.int8 turns into one int8 graph (None: the whole forward).
    int8_scope: Sequence[str] | None = None
    # (model config) -> what is wrong with its values, checked with the config.
    config_problems: Callable[[Any], list[str]] = lambda cfg: []
    # (release name, model config) -> the local file of a released checkpoint, fetched once;
    # ``load_from=<name>:<release>`` (src/models/registry.py ``resolve_load_from``). None: the
    # model has no released checkpoints to fetch.
    released_weights: Callable[[str, Any], Path] | None = None
