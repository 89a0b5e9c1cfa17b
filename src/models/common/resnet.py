"""ResNet backbone in the torchvision parameter layout, written without torchvision.

Only the feature stages are built (no average pool, no classifier). ``forward`` returns the
outputs of layer2, layer3 and layer4 (strides 8, 16, 32), the feature maps the models' necks
use. Keeping the torchvision key names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...) lets ImageNet
weights saved by torchvision load directly, and makes the reference checkpoints map by a plain
prefix rename.
ReLU is the functional one: one ``nn.ReLU`` module called twice in a block is one graph partition
with two outputs, which the int8 quantizer (src/inference/quantize.py) refuses; it has no
parameters, so the keys are the same.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.functional import relu

# name -> (block type, blocks per stage)
RESNET_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


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
