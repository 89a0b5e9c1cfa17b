"""The checkpoints released with the reference (Turoad/CLRNet, GitHub release ``models``), fetched
once into the weights cache: ``load_from=clrnet:<name>``, e.g. ``clrnet:culane_r18``.

Each release asset is a zip holding one ``.pth`` (``{"net": ..., "optim": ..., ...}``, loaded by
``weights.load_weights``). The zip is downloaded as ``clrnet_<name>.pth.zip`` into torch.hub's
checkpoint folder (src/models/common/download.py: atomic, bounded in time, mirror and offline
help), its ``.pth`` extracted beside it as ``clrnet_<name>.pth`` (atomically), and that file is
what loads; once extracted, no network is needed. The authors publish no sha256 of these assets,
so the first download's is recorded beside the zip (``clrnet_<name>.pth.zip.sha256``, trust on
first use) and a later download must match it; writing the hash you trust into that file before
the first download pins it.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.models.common.download import PretrainedWeightsError, cached_download, weights_cache_dir
from src.run_dir import write_atomic

RELEASE_URL = "https://github.com/Turoad/CLRNet/releases/download/models/"


@dataclass(frozen=True)
class Release:
    """What a released checkpoint needs from the model config, and the recipe that scores it."""

    backbone: str
    num_seg_classes: int  # the segmentation decoder's classes (its weights' shape)
    # The overrides that score it: its experiment (data, input, decoding) and model option.
    recipe: str


# The reference's ResNet-101 release (culane_r101) is left out: that backbone is not ported.
RELEASES: dict[str, Release] = {
    "culane_r18": Release("resnet18", 5, "clrnet_culane"),
    "culane_r34": Release("resnet34", 5, "clrnet_culane model=clrnet_r34"),
    "culane_dla34": Release("dla34", 5, "clrnet_culane model=clrnet_dla34"),
    "tusimple_r18": Release("resnet18", 7, "clrnet_tusimple"),
    "llamas_r18": Release("resnet18", 5, "clrnet_llamas"),
}


def release_problems(name: str, model_cfg: Any) -> list[str]:
    """How the model config differs from what release ``name`` was trained as."""
    release = RELEASES[name]
    wanted = f"(experiment={release.recipe} sets it)"
    problems = []
    if model_cfg.backbone != release.backbone:
        problems.append(
            f"clrnet:{name} has a {release.backbone} backbone, the config a "
            f"{model_cfg.backbone}: use model.backbone={release.backbone} {wanted}"
        )
    seg_classes = model_cfg.num_seg_classes or model_cfg.max_lanes + 1
    if seg_classes != release.num_seg_classes:
        problems.append(
            f"clrnet:{name} has {release.num_seg_classes} segmentation classes, the config "
            f"{seg_classes}: use model.num_seg_classes={release.num_seg_classes} {wanted}"
        )
    return problems


def fetch_release(name: str, model_cfg: Any, progress: bool = True) -> Path:
    """The local ``.pth`` of release ``name``, fetched and extracted on first use. ValueError for
    an unknown name or a model config the checkpoint does not fit (before any download);
    PretrainedWeightsError when it cannot be fetched or read (saying where to put the file)."""
    if name not in RELEASES:
        raise ValueError(
            f"load_from=clrnet:{name}: no such CLRNet release; known: "
            f"{', '.join(f'clrnet:{known}' for known in RELEASES)}"
        )
    problems = release_problems(name, model_cfg)
    if problems:
        raise ValueError("; ".join(problems))
    target = cached_checkpoint_path(name)
    if target.is_file():
        return target
    archive = cached_download(
        f"clrnet_{name}.pth.zip",
        f"{RELEASE_URL}{name}.pth.zip",
        sha256=None,  # not published (see the module docstring)
        what=f"the released CLRNet checkpoint {name} (load_from=clrnet:{name})",
        alternatives=(
            f"or extract {name}.pth from it and give its path: load_from=/path/to/{name}.pth"
        ),
        progress=progress,
    )
    return extract_checkpoint(archive, target)


def cached_checkpoint_path(name: str) -> Path:
    """Where release ``name``'s extracted ``.pth`` is kept (the weights cache)."""
    return weights_cache_dir() / f"clrnet_{name}.pth"


def extract_checkpoint(archive: Path, target: Path) -> Path:
    """Write the one ``.pth`` inside ``archive`` to ``target`` atomically; returns ``target``."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [
                info
                for info in bundle.infolist()
                if not info.is_dir() and info.filename.endswith(".pth")
            ]
            if len(members) != 1:
                names = [info.filename for info in bundle.infolist()]
                raise PretrainedWeightsError(
                    f"{archive}: expected one .pth file inside, found {names}; delete it to "
                    "download it again"
                )
            with bundle.open(members[0]) as source:
                write_atomic(target, lambda out: shutil.copyfileobj(source, out, 1 << 20))
    except (zipfile.BadZipFile, OSError) as error:
        raise PretrainedWeightsError(
            f"{archive} cannot be read as a zip ({type(error).__name__}: {error}); delete it to "
            "download it again"
        ) from error
    return target
