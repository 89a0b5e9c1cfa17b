"""Where derived data (duplicate-filter results, generated datasets) is cached."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$XDG_CACHE_HOME/srlane-launcher`` or
    ``~/.cache/srlane-launcher``: never the current directory."""
    if cache_dir:
        return Path(cache_dir).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "srlane-launcher"
