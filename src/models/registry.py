"""The models the launcher knows: one line per model package (its ``PLUGIN``).

A new model: a package src/models/<name>/ exporting ``PLUGIN`` (src/models/plugin.py says what
it holds), its line here, and conf/model/<name>.yaml.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from torch import nn

from src.models.clrnet import PLUGIN as CLRNET
from src.models.plugin import ModelPlugin
from src.models.srlane import PLUGIN as SRLANE

MODEL_PLUGINS: tuple[ModelPlugin, ...] = (SRLANE, CLRNET)

# load_from=<model>:<release>, e.g. clrnet:culane_r18 (a released checkpoint, fetched once).
_RELEASE_NAME = re.compile(r"([a-z][a-z0-9_]*):([A-Za-z0-9_.-]+)")


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


def resolve_load_from(load_from: str, model_cfg: Any) -> str:
    """``load_from`` as a local file: ``<model>:<release>`` (e.g. ``clrnet:culane_r18``) is the
    model's released checkpoint, fetched into the weights cache on first use and checked against
    the model config; anything else (a path) is returned as it is. ValueError for an unknown
    model or release (the message lists the known ones)."""
    match = _RELEASE_NAME.fullmatch(load_from)
    if match is None or Path(load_from).exists():
        return load_from
    name, release = match.groups()
    plugins = {plugin.name: plugin for plugin in MODEL_PLUGINS}
    with_releases = sorted(n for n, p in plugins.items() if p.released_weights is not None)
    plugin = plugins.get(name)
    if plugin is None or plugin.released_weights is None:
        raise ValueError(
            f"load_from={load_from}: no file of that name, and {name!r} is not a model with "
            f"released checkpoints ({', '.join(with_releases) or 'none'}); give a path"
        )
    if plugin_for(model_cfg._target_) is not plugin:
        raise ValueError(
            f"load_from={load_from} is a {name} checkpoint, but the config's model is "
            f"{model_cfg._target_}: add model={name} (or the experiment that scores it)"
        )
    return str(plugin.released_weights(release, model_cfg))
