"""Channel-mapper neck: a 1x1 convolution (with bias) per level to a common width.

No top-down fusion and no normalisation, as in the reference.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ChannelMapper(nn.Module):
    """Maps each backbone level (fine -> coarse) to ``out_channels`` channels."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 64) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, kernel_size=1) for c in in_channels)

    def forward(self, feats: Sequence[Tensor]) -> list[Tensor]:
        return [conv(f) for conv, f in zip(self.convs, feats, strict=True)]
