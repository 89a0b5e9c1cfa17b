"""ResNet backbone in the torchvision parameter layout, written without torchvision.

Only the feature stages are built (no average pool, no classifier). ``forward`` returns the
outputs of layer2, layer3 and layer4 (strides 8, 16, 32), which is all SRLane uses. Keeping the
torchvision key names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...) lets ImageNet weights saved by
torchvision load directly, and makes the reference checkpoint map by a plain prefix rename.
ReLU is the functional one: one ``nn.ReLU`` module called twice in a block is one graph partition
with two outputs, which the int8 quantizer (src/inference/quantize.py) refuses; it has no
parameters, so the keys are the same.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.functional import relu

from .pretrained import IMAGENET, IMAGENET_BASE_URL, IMAGENET_FILES, resolve_backbone_weights

log = logging.getLogger(__name__)

# name -> (block type, blocks per stage)
RESNET_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

# torchvision's ImageNet weights; pretrained_backbone=imagenet fetches them (see pretrained.py).
IMAGENET_URLS = {name: IMAGENET_BASE_URL + file for name, file in IMAGENET_FILES.items()}


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return relu(out + identity, inplace=True)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 convolutions with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = _shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = relu(self.bn1(self.conv1(x)), inplace=True)
        out = relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        return relu(out + identity, inplace=True)


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Sequential | None:
    """Projection shortcut (1x1 conv + BN) when the block changes shape, else identity (None)."""
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    """ResNet feature extractor returning the stride 8, 16 and 32 feature maps."""

    def __init__(self, name: str = "resnet18") -> None:
        super().__init__()
        if name not in RESNET_SPECS:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(RESNET_SPECS)}")
        kind, depths = RESNET_SPECS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        for index, (planes, depth) in enumerate(
            zip((64, 128, 256, 512), depths, strict=True), start=1
        ):
            stride = 1 if index == 1 else 2
            blocks = []
            for b in range(depth):
                blocks.append(block(in_ch, planes, stride if b == 0 else 1))
                in_ch = planes * block.expansion
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
        # Channels of the layer2 / layer3 / layer4 outputs.
        self.out_channels = [c * block.expansion for c in (128, 256, 512)]
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference's (and torchvision's) init: Kaiming-normal convs, unit BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer1(x)
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]


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


def load_pretrained_backbone(backbone: ResNet, path: str | Path) -> dict[str, list[str]]:
    """Load torchvision-layout ImageNet weights into ``backbone``, keeping only keys whose name
    and shape match (the classifier ``fc.*`` is always skipped).

    ``path`` is a local file, or ``"imagenet"``: torchvision's ImageNet weights for this depth,
    from torch.hub's cache, downloaded there on first use (``pretrained.py``).

    Returns ``{"loaded": [...], "skipped": [...], "not_loaded": [...]}``: file keys used, file
    keys that do not fit, backbone keys left at their init (logged as a warning; BatchNorm's
    ``num_batches_tracked`` step counters, which torchvision's files may lack, are not counted).
    Raises FileNotFoundError (saying what to download) when the file is missing,
    ``pretrained.PretrainedWeightsError`` when ``imagenet`` cannot be fetched, and ValueError
    when nothing in the file fits the backbone.
    """
    imagenet = str(path) == IMAGENET
    path = resolve_backbone_weights(path, backbone.name)
    if not path.is_file():
        url = IMAGENET_URLS.get(backbone.name, "torchvision's ImageNet checkpoint")
        raise FileNotFoundError(
            f"pretrained_backbone file not found: {path}. Set model.pretrained_backbone="
            f"{IMAGENET} to download torchvision's ImageNet weights for {backbone.name} ({url}) "
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
            f"{path}: no tensor fits the {backbone.name} backbone (is it a torchvision ResNet "
            "state dict of the same depth?)"
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
        " (torchvision's ImageNet weights)" if imagenet else "",
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
