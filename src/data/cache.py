"""Where derived data (duplicate-filter results, generated datasets) is cached: the one cache
convention of the project, ``$SRLANE_CACHE`` (default ``~/.cache/srlane-launcher``). ImageNet
weights are the exception on purpose: they live in torch.hub's cache, shared with torchvision."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given (``dataset.cache_dir``), else ``$SRLANE_CACHE``, else
    ``~/.cache/srlane-launcher``: never the current directory."""
    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    default = os.path.join(os.path.expanduser("~"), ".cache", "srlane-launcher")
    return Path(os.environ.get("SRLANE_CACHE") or default).expanduser().absolute()
