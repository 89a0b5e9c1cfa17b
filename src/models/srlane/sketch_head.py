"""Sketch head: local lane-angle maps and the straight-line lane proposals built from them.

Each level gets a 1x1 convolution to one channel and a sigmoid: theta in (0, 1) is the local
lane angle / pi, measured from +x in a y-up frame (0.5 = vertical). ``angle_convs`` is ordered
coarse -> fine (index 0 serves the stride-32 map), as in the reference checkpoint.

Proposals come from the stride-32 map only, resized to ``angle_map_size`` (4 x 10 by default):
every cell emits the straight line through its centre with that cell's angle, sampled at the
``num_points`` proposal rows. A proposal row is
``[logit_0, logit_1, start_y, length, x_0 .. x_{P-1}]`` with x normalised by the image width and
rows ordered bottom -> top; logits and length start at 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Angles are clamped to this range before building proposals (drops near-horizontal lines).
ANGLE_CLAMP = (0.05, 0.95)


class SketchHead(nn.Module):
    def __init__(
        self,
        in_channels: int = 64,
        num_levels: int = 3,
        num_points: int = 72,
        angle_map_size: Sequence[int] = (4, 10),
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.map_h, self.map_w = (int(s) for s in angle_map_size)
        # Index 0 = coarsest level (stride 32), the last index = finest (stride 8).
        self.angle_convs = nn.ModuleList(
            nn.Conv2d(in_channels, 1, kernel_size=1, bias=False) for _ in range(num_levels)
        )
        for conv in self.angle_convs:
            nn.init.normal_(conv.weight, 0.0, 1e-3)
        # Proposal rows in y-up cell units (0 = image bottom) and the cell centres. Constants:
        # recomputed here, not stored in checkpoints.
        self.register_buffer(
            "prior_ys",
            torch.linspace(0, self.map_h, steps=num_points, dtype=torch.float32),
            persistent=False,
        )
        centre_y, centre_x = torch.meshgrid(
            torch.arange(self.map_h - 0.5, 0, -1, dtype=torch.float32),
            torch.arange(0.5, self.map_w, 1, dtype=torch.float32),
            indexing="ij",
        )
        self.register_buffer(
            "grid", torch.stack((centre_x, centre_y)).unsqueeze(0), persistent=False
        )  # (1, 2, map_h, map_w)

    def angle_maps(self, feats: Sequence[Tensor]) -> list[Tensor]:
        """Angle maps (B, H, W) for ``feats`` given fine -> coarse and ending with the coarsest
        level (pass just the coarsest one at inference)."""
        n = len(feats)
        return [
            self.angle_convs[n - 1 - i](feat).sigmoid().squeeze(1) for i, feat in enumerate(feats)
        ]

    def proposals(self, coarse_angle: Tensor) -> Tensor:
        """Lane proposals (B, map_h * map_w, 4 + num_points) from the stride-32 angle map.

        Computed in float32 and detached: proposals carry no gradient into the sketch head.
        """
        with torch.autocast(coarse_angle.device.type, enabled=False):
            angle = F.interpolate(
                coarse_angle.detach().float().unsqueeze(1),
                size=[self.map_h, self.map_w],
                mode="bilinear",
                align_corners=True,
            ).squeeze(1)
            angle = angle.clamp(*ANGLE_CLAMP)
            slope = torch.tan(angle * math.pi)
            batch = angle.shape[0]
            cells = self.map_h * self.map_w
            centre_x = self.grid[:, 0].reshape(1, cells, 1)
            centre_y = self.grid[:, 1].reshape(1, cells, 1)
            xs = (self.prior_ys.view(1, 1, -1) - centre_y) / slope.view(batch, cells, 1)
            xs = (xs + centre_x) / self.map_w
            inside = (xs >= 0) & (xs < 1)
            # First row inside the image (0 when none is).
            first_inside = inside.to(torch.uint8).argmax(-1)
            start_y = first_inside / (self.num_points - 1)
            zeros = xs.new_zeros(batch, cells, 1)
            return torch.cat((zeros, zeros, start_y.unsqueeze(-1), zeros, xs), dim=-1)
