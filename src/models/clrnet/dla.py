"""DLA-34 (Deep Layer Aggregation, Yu et al. 2018) as CLRNet's reference uses it: the backbone of
its best published model (CULane F1 80.47) and of CLRerNet.

Levels: a 7x7 stride-1 stem (16 ch), two conv levels (16 ch; 32 ch at stride 2), then four
aggregation trees (64, 128, 256, 512 ch at strides 4, 8, 16, 32). A tree of depth 1 runs two
residual blocks and merges their outputs (and, for ``level_root`` trees, the tree's downsampled
input) in a Root: a 1x1 convolution over the concatenation, BatchNorm, ReLU. A tree of depth 2
nests two depth-1 trees, the second one's root also merging the first one's output. ``forward``
returns levels 3-5 (strides 8, 16, 32), what the FPN uses.

Module names are the reference's (``base_layer``, ``level0`` .. ``level5``, ``tree1``, ``tree2``,
``root``, ``project``), so its checkpoints and the ImageNet weights it starts from
(``dla34-ba72cf86.pth`` from http://dl.yf.io/dla/models/imagenet/) map by name. Like the
reference, no explicit initialisation (PyTorch's defaults). ReLU is functional (see
``src/models/common/resnet.py`` for why).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.functional import relu

DLA34_LEVELS = (1, 1, 1, 2, 2, 1)
DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_ch)]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; the residual is given by the tree (its projected input) or is x."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_ch, out_ch, 3, stride)
        self.conv2, self.bn2 = _conv_bn(out_ch, out_ch, 3)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        residual = x if residual is None else residual
        out = relu(self.bn1(self.conv1(x)))
        return relu(self.bn2(self.conv2(out)) + residual)


class Root(nn.Module):
    """Merges a tree's outputs: 1x1 convolution over their concatenation, BatchNorm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv, self.bn = _conv_bn(in_ch, out_ch, 1)

    def forward(self, *children: Tensor) -> Tensor:
        return relu(self.bn(self.conv(torch.cat(children, dim=1))))


class Tree(nn.Module):
    """An aggregation tree of ``levels`` depth (see the module docstring)."""

    def __init__(
        self,
        levels: int,
        in_ch: int,
        out_ch: int,
        stride: int = 1,
        level_root: bool = False,
        root_dim: int = 0,
    ) -> None:
        super().__init__()
        root_dim = root_dim or 2 * out_ch
        if level_root:
            root_dim += in_ch
        if levels == 1:
            self.tree1 = BasicBlock(in_ch, out_ch, stride)
            self.tree2 = BasicBlock(out_ch, out_ch)
            self.root = Root(root_dim, out_ch)
        else:
            self.tree1 = Tree(levels - 1, in_ch, out_ch, stride)
            self.tree2 = Tree(levels - 1, out_ch, out_ch, root_dim=root_dim + out_ch)
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else None
        self.project = nn.Sequential(*_conv_bn(in_ch, out_ch, 1)) if in_ch != out_ch else None

    def forward(
        self, x: Tensor, residual: Tensor | None = None, children: list[Tensor] | None = None
    ) -> Tensor:
        # ``residual`` is accepted for the call signature the blocks share, and recomputed.
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        residual = self.project(bottom) if self.project is not None else bottom
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, residual)
        if self.levels == 1:
            return self.root(self.tree2(x1), x1, *children)
        children.append(x1)
        return self.tree2(x1, children=children)


class DLA34(nn.Module):
    """DLA-34 feature extractor returning the stride 8, 16 and 32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        self.name = "dla34"
        levels, channels = DLA34_LEVELS, DLA34_CHANNELS
        self.base_layer = nn.Sequential(*_conv_bn(3, channels[0], 7), nn.ReLU())
        self.level0 = self._conv_level(channels[0], channels[0], levels[0])
        self.level1 = self._conv_level(channels[0], channels[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], channels[1], channels[2], 2, level_root=False)
        self.level3 = Tree(levels[3], channels[2], channels[3], 2, level_root=True)
        self.level4 = Tree(levels[4], channels[3], channels[4], 2, level_root=True)
        self.level5 = Tree(levels[5], channels[4], channels[5], 2, level_root=True)
        self.out_channels = list(channels[3:])

    @staticmethod
    def _conv_level(in_ch: int, out_ch: int, convs: int, stride: int = 1) -> nn.Sequential:
        modules: list[nn.Module] = []
        for i in range(convs):
            modules += [*_conv_bn(in_ch, out_ch, 3, stride if i == 0 else 1), nn.ReLU()]
            in_ch = out_ch
        return nn.Sequential(*modules)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.level2(self.level1(self.level0(self.base_layer(x))))
        c3 = self.level3(x)
        c4 = self.level4(c3)
        return [c3, c4, self.level5(c4)]
