"""The models the launcher knows: one line per model package (its ``PLUGIN``).

A new model: a package src/models/<name>/ exporting ``PLUGIN`` (src/models/plugin.py says what
it holds), its line here, and conf/model/<name>.yaml.
"""

from __future__ import annotations

import importlib

from torch import nn

from src.models.plugin import ModelPlugin
from src.models.srlane import PLUGIN as SRLANE

MODEL_PLUGINS: tuple[ModelPlugin, ...] = (SRLANE,)


def plugin_for(target: str) -> ModelPlugin:
    """The plugin of the model class ``target`` (a config's ``model._target_``)."""
    for plugin in MODEL_PLUGINS:
        if plugin.model_class == target:
            return plugin
    known = ", ".join(p.model_class for p in MODEL_PLUGINS)
    raise ValueError(
        f"model._target_={target} is not a registered model ({known}): add its package's "
        "PLUGIN to src/models/registry.py"
    )


def plugin_of(model: nn.Module) -> ModelPlugin:
    """The plugin of a model instance (e.g. the network an export writes)."""
    for plugin in MODEL_PLUGINS:
        module, _, name = plugin.model_class.rpartition(".")
        if isinstance(model, getattr(importlib.import_module(module), name)):
            return plugin
    raise ValueError(f"{type(model).__name__} is not a registered model (src/models/registry.py)")
