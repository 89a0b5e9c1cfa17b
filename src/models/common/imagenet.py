"""ImageNet weights for the backbones, fetched once into torch.hub's cache (``download.py``).

``model.pretrained_backbone=imagenet`` resolves, through ``resolve_backbone_weights``, to the
published ImageNet file of the backbone: torchvision's for the ResNets (the files
``pretrained=True`` fetches), the DLA authors' for DLA-34 (what its users' references load). Each
name carries the first 8 hex digits of the file's sha256 (torch.hub's naming), which the download
is checked against. Anything else given to ``pretrained_backbone`` is a local path.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .download import PretrainedWeightsError, cached_download

log = logging.getLogger(__name__)

# The value of model.pretrained_backbone that asks for the ImageNet weights.
IMAGENET = "imagenet"
IMAGENET_BASE_URL = "https://download.pytorch.org/models/"
# backbone -> (publisher, folder URL, file name). torchvision's IMAGENET1K_V1 (the reference's
# code names older copies of them, resnet18-5c106cde.pth ..., in the legacy serialisation
# format); DLA-34 from the DLA authors' server, as the references using it (dla34-ba72cf86.pth:
# its name follows the same sha256-prefix convention, which could not be checked from here).
IMAGENET_FILES: dict[str, tuple[str, str, str]] = {
    "resnet18": ("torchvision's", IMAGENET_BASE_URL, "resnet18-f37072fd.pth"),
    "resnet34": ("torchvision's", IMAGENET_BASE_URL, "resnet34-b627a593.pth"),
    "resnet50": ("torchvision's", IMAGENET_BASE_URL, "resnet50-0676ba61.pth"),
    "dla34": ("the DLA authors'", "http://dl.yf.io/dla/models/imagenet/", "dla34-ba72cf86.pth"),
}
IMAGENET_URLS = {name: base + file for name, (_, base, file) in IMAGENET_FILES.items()}

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.")


def hash_prefix(file_name: str) -> str:
    """The sha256 prefix in a torch.hub-style file name (``resnet18-f37072fd.pth``)."""
    match = _HASH_IN_NAME.search(file_name)
    if match is None:
        raise ValueError(f"{file_name!r} carries no sha256 prefix (<name>-<hex digits>.<ext>)")
    return match.group(1)


def resolve_backbone_weights(source: str | Path, backbone: str, progress: bool = True) -> Path:
    """``imagenet`` -> the cached (downloaded if needed) ImageNet file for ``backbone``;
    anything else -> that local path, unchecked (the loader reports a missing file)."""
    if str(source) == IMAGENET:
        return fetch_imagenet_weights(backbone, progress=progress)
    return Path(source).expanduser()


def fetch_imagenet_weights(
    backbone: str, progress: bool = True, timeout: float | None = None
) -> Path:
    """The local path of the ImageNet weights for ``backbone``, downloaded on first use. Raises
    PretrainedWeightsError, saying where to put the file, when that fails."""
    if backbone not in IMAGENET_FILES:
        raise PretrainedWeightsError(
            f"no ImageNet weights known for {backbone!r} (known: {sorted(IMAGENET_FILES)})"
        )
    file_name = IMAGENET_FILES[backbone][2]
    return cached_download(
        file_name,
        IMAGENET_URLS[backbone],
        hash_prefix(file_name),
        what=f"the ImageNet weights for {backbone} (model.pretrained_backbone={IMAGENET})",
        alternatives=(
            f"or set model.pretrained_backbone=/path/to/{file_name}, or null to train from scratch"
        ),
        progress=progress,
        timeout=timeout,
    )


def _fitting_tensors(state: Any, own: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """(tensors of the file whose name and shape fit the backbone, names of the others)."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    fitting, skipped = {}, []
    for key, value in state.items():
        if key in own and tuple(own[key].shape) == tuple(value.shape):
            fitting[key] = value
        else:
            skipped.append(key)
    return fitting, skipped


def load_pretrained_backbone(backbone: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load ImageNet weights into ``backbone`` (a ResNet in torchvision's layout, or DLA-34 in
    its authors'; ``backbone.name`` says which), keeping only keys whose name and shape match
    (the classifier ``fc.*`` is always skipped).

    ``path`` is a local file, or ``"imagenet"``: the published ImageNet weights for this
    backbone, from torch.hub's cache, downloaded there on first use.

    Returns ``{"loaded": [...], "skipped": [...], "not_loaded": [...]}``: file keys used, file
    keys that do not fit, backbone keys left at their init (logged as a warning; BatchNorm's
    ``num_batches_tracked`` step counters, which torchvision's files may lack, are not counted).
    Raises FileNotFoundError (saying what to download) when the file is missing,
    ``download.PretrainedWeightsError`` when ``imagenet`` cannot be fetched, and ValueError
    when nothing in the file fits the backbone.
    """
    imagenet = str(path) == IMAGENET
    path = resolve_backbone_weights(path, backbone.name)
    if not path.is_file():
        url = IMAGENET_URLS.get(backbone.name, "its ImageNet checkpoint")
        raise FileNotFoundError(
            f"pretrained_backbone file not found: {path}. Set model.pretrained_backbone="
            f"{IMAGENET} to download the ImageNet weights for {backbone.name} ({url}) "
            "into torch.hub's cache, or download that file and set "
            "model.pretrained_backbone=/path/to/that/file, or set it to null to train from "
            "scratch."
        )
    own = backbone.state_dict()
    fitting, skipped = _fitting_tensors(
        torch.load(path, map_location="cpu", weights_only=True), own
    )
    loaded = list(fitting)
    if not fitting:
        raise ValueError(
            f"{path}: no tensor fits the {backbone.name} backbone (is it the ImageNet "
            "state dict of this backbone?)"
        )
    backbone.load_state_dict(fitting, strict=False)
    not_loaded = [
        key for key in own if key not in fitting and not key.endswith("num_batches_tracked")
    ]
    log.info(
        "%s backbone: loaded %d tensors from %s%s (%d file keys skipped%s)",
        backbone.name,
        len(loaded),
        path,
        f" ({IMAGENET_FILES[backbone.name][0]} ImageNet weights)" if imagenet else "",
        len(skipped),
        f": {', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''}" if skipped else "",
    )
    if not_loaded:
        log.warning(
            "%s: %d of the %s backbone's tensors found nothing that fits in the file and keep "
            "their init (first: %s)",
            path,
            len(not_loaded),
            backbone.name,
            not_loaded[0],
        )
    return {"loaded": loaded, "skipped": skipped, "not_loaded": not_loaded}
