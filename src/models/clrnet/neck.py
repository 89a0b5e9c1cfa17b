"""CLRNet's FPN neck: a 1x1 lateral convolution per level, top-down addition of the nearest-
upsampled coarser level, then a 3x3 convolution per level. Convolutions have biases and no
normalisation or activation (mmcv ConvModule with norm_cfg=None, act_cfg=None in the reference,
initialised Kaiming-normal fan_out with zero bias as ConvModule does)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def _conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class FPN(nn.Module):
    """Feature pyramid over the backbone levels (fine -> coarse), ``out_channels`` wide."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 64) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(_conv(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(_conv(out_channels, out_channels, 3) for _ in in_channels)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            coarser = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + coarser
        return [conv(x) for conv, x in zip(self.fpn_convs, laterals, strict=True)]
