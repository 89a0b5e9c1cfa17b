"""Refine head: pools lane features along each proposal and predicts class logits and offsets.

One refine stage (the reference uses one; ``refine_layers`` > 1 chains stages, each starting from
the previous stage's detached predictions and adding its lane features):

1. Sample ``sample_points`` points along the proposal (rows ``long(linspace(0, 1, S) * 71)``,
   ordered top -> bottom) on every pyramid level with bilinear ``grid_sample``.
2. Mix the levels per point with learnable weights: ``softmax_l(-(z - l)^2 / 2)`` where ``z`` is a
   learnable scalar per point and ``l`` = 0 (stride 32), 1 (stride 16), 2 (stride 8).
3. Grouped gather: a Conv1d over the S points whose kernel spans all channels, in ``num_groups``
   groups, gives one feature per lane segment (6 segments x 32 by default). It is computed as a
   batched matrix product over the same weight (see ``GroupedGather``).
4. Lane-segment attention: each lane's single query attends over the keys of all lanes, per
   segment group; the context goes through an MLP and is added back.
5. Class head (2 logits) and regression head (start_y, length and the x offsets), both
   Linear-ReLU-Linear; the regression is added to the proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _two_layer_head(dim: int, out_dim: int) -> nn.Sequential:
    head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out_dim))
    nn.init.normal_(head[2].weight, 0.0, 1e-3)
    nn.init.normal_(head[2].bias, 0.0, 1e-3)
    return head


class GroupedGather(nn.Conv1d):
    """The reference's grouped gather ``Conv1d(S, hidden, kernel_size=C, groups=G)``, whose kernel
    spans the whole input length, computed as one batched matrix product over the same weight.

    Parameters, initialisation, state-dict entries (``weight`` (hidden, S / G, C), ``bias``
    (hidden,)) and output shape (rows, hidden, 1) are the ``nn.Conv1d``'s; only the kernel differs.
    Why not the convolution (a deviation from the reference's code, not from its maths): for this
    shape (a single output position) oneDNN's CPU grouped convolution is 4-13x slower than
    ``baddbmm`` over the same numbers. Measured with torch 2.13 on the 2-core CPU machine,
    1 thread, 40 rows per image, conv vs baddbmm: forward batch 1 0.43 vs 0.08 ms (fp32),
    0.36 vs 0.07 ms (bf16 autocast); batch 8 3.2 vs 0.5 ms (fp32), 2.7 vs 0.2 ms (bf16);
    forward + backward batch 8 10.0 vs 2.4 ms (fp32), 10.6 vs 1.7 ms (bf16); a default-recipe
    training step (batch 8, 320x128) 467 -> 439 ms in fp32, 278 -> 269 ms in bf16. Keeping the
    convolution in fp32 under autocast was no faster than the convolution. The product is the same
    sum in another order (fp32 outputs agree to ~1e-6). ``baddbmm`` is on autocast's
    lower-precision list (CPU and CUDA), so mixed precision runs it in bf16 / fp16 and returns the
    dtype the convolution did. It also keeps this layer off oneDNN's grouped-convolution kernel,
    reported to return wrong bf16 values for batches > 1 with torch 2.13 (not reproduced on that
    machine; ``tests/models/test_srlane_precision.py`` watches the kernel).
    """

    def forward(self, x: Tensor) -> Tensor:
        rows, channels, length = x.shape
        if (channels, length) != (self.in_channels, self.kernel_size[0]):
            raise ValueError(
                f"gather expects (rows, {self.in_channels}, {self.kernel_size[0]}), "
                f"got {tuple(x.shape)}"
            )
        groups = self.groups
        per_group = self.out_channels // groups
        weight = self.weight.reshape(groups, per_group, -1)  # (G, out/G, S/G * C)
        inputs = x.reshape(rows, groups, -1).transpose(0, 1)  # (G, rows, S/G * C)
        if self.bias is None:
            out = torch.bmm(inputs, weight.transpose(1, 2))
        else:
            bias = self.bias.view(groups, 1, per_group)
            out = torch.baddbmm(bias, inputs, weight.transpose(1, 2))  # (G, rows, out/G)
        return out.transpose(0, 1).reshape(rows, self.out_channels, 1)


class SegmentAttention(nn.Module):
    """Attention across lanes, separately for each lane segment group.

    Queries: one ``head_dim`` vector per lane (a Linear over the whole lane feature), shared by
    all groups. Keys: a grouped 1x1 projection. Values: the lane feature split into groups,
    unprojected. ``softmax(q k^T / sqrt(head_dim)) v`` per group gives the context (B, N, dim).
    """

    def __init__(self, dim: int, num_groups: int) -> None:
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"feature width {dim} is not divisible by num_groups {num_groups}")
        self.num_groups = num_groups
        self.head_dim = dim // num_groups
        self.q_proj = nn.Linear(dim, self.head_dim)
        self.k_proj = nn.Conv1d(dim, dim, kernel_size=1, groups=num_groups)

    def forward(self, x: Tensor) -> Tensor:
        batch, lanes, dim = x.shape
        groups, head_dim = self.num_groups, self.head_dim
        keys = self.k_proj(x.reshape(batch * lanes, dim, 1))
        keys = keys.view(batch, lanes, groups, head_dim).transpose(1, 2)  # (B, G, N, hd)
        values = x.view(batch, lanes, groups, head_dim).transpose(1, 2)  # (B, G, N, hd)
        query = self.q_proj(x).unsqueeze(1).expand(-1, groups, -1, -1)  # (B, G, N, hd)
        context = F.scaled_dot_product_attention(query, keys, values)
        return context.transpose(1, 2).reshape(batch, lanes, dim)


class RefineStage(nn.Module):
    """One refinement stage (see the module docstring)."""

    def __init__(
        self,
        in_channels: int = 64,
        hidden_dim: int = 192,
        num_points: int = 72,
        sample_points: int = 36,
        num_groups: int = 6,
        num_levels: int = 3,
        z_mean: float = 0.9269,
        z_std: float = 0.2379,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_dim = hidden_dim
        n_strips = num_points - 1
        # Proposal rows that are sampled (bottom-up indices) and their y in [0, 1], top -> bottom.
        rows = (torch.linspace(0, 1, steps=sample_points, dtype=torch.float32) * n_strips).long()
        self.register_buffer("sample_rows", rows, persistent=False)
        self.register_buffer(
            "sample_ys", torch.flip(1 - rows.float() / n_strips, dims=[-1]), persistent=False
        )
        self.level_z = nn.Parameter(torch.empty(sample_points))
        nn.init.normal_(self.level_z, mean=z_mean, std=z_std)
        self.register_buffer(
            "levels", torch.arange(num_levels, dtype=torch.float32), persistent=False
        )
        self.gather = GroupedGather(
            sample_points, hidden_dim, kernel_size=in_channels, groups=num_groups
        )
        # The reference defines this layer but never uses it. Kept, frozen (it never gets a
        # gradient there either), so reference checkpoints map key for key and the parameter
        # count is the published 11.59 M.
        self.shuffle_fc = nn.Linear(hidden_dim, hidden_dim).requires_grad_(False)
        self.attention = SegmentAttention(hidden_dim, num_groups)
        self.attention_mlp = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.ReLU(), nn.Linear(2 * hidden_dim, hidden_dim)
        )
        self.cls_head = _two_layer_head(hidden_dim, 2)
        self.reg_head = _two_layer_head(hidden_dim, num_points + 2)

    def level_weights(self) -> Tensor:
        """(sample_points, num_levels) softmax weights of each pyramid level per sample point."""
        return torch.softmax(-((self.level_z.unsqueeze(-1) - self.levels) ** 2) / 2, dim=-1)

    def sample_features(self, feats: Sequence[Tensor], priors: Tensor) -> Tensor:
        """Level-weighted features at the sample points: (B, N, sample_points, C), float32.

        ``feats`` are ordered coarse -> fine (level 0 = stride 32).
        """
        with torch.autocast(priors.device.type, enabled=False):
            xs = priors[..., 4 + self.sample_rows].float().flip(-1)  # top -> bottom
            ys = self.sample_ys.view(1, 1, -1).expand_as(xs)
            points = torch.stack((xs, ys), dim=-1) * 2.0 - 1.0  # (B, N, S, 2) in [-1, 1]
            weights = self.level_weights().t()  # (L, S)
            sampled = (
                F.grid_sample(
                    feat.float(), points, mode="bilinear", padding_mode="zeros", align_corners=True
                )  # (B, C, N, S)
                * weight
                for feat, weight in zip(feats, weights, strict=True)
            )
            return sum(sampled).permute(0, 2, 3, 1)

    def forward(
        self, feats: Sequence[Tensor], priors: Tensor, prev_feature: Tensor | None, with_cls: bool
    ) -> tuple[Tensor, Tensor]:
        """Refine ``priors`` (B, N, 4 + P).

        Returns the predictions (B, N, 4 + P) and the lane features (B * N, hidden) passed to
        the next stage. When ``with_cls`` is False (an intermediate stage at inference) the
        logits are copied from ``priors``, as in the reference.
        """
        batch, lanes = priors.shape[:2]
        pooled = self.sample_features(feats, priors)
        feature = self.gather(pooled.reshape(batch * lanes, -1, self.in_channels))
        feature = feature.reshape(batch, lanes, self.hidden_dim)
        feature = feature + self.attention_mlp(self.attention(feature))
        feature = feature.reshape(batch * lanes, self.hidden_dim)
        if prev_feature is not None:
            feature = feature + prev_feature
        reg = self.reg_head(feature).reshape(batch, lanes, -1).float()
        if with_cls:
            logits = self.cls_head(feature).reshape(batch, lanes, 2).float()
        else:
            logits = priors[..., :2]
        predictions = torch.cat((logits, priors[..., 2:] + reg), dim=-1)
        return predictions, feature


class RefineHead(nn.Module):
    """A cascade of ``refine_layers`` refine stages (one by default)."""

    def __init__(self, refine_layers: int = 1, **stage_kwargs: int | float) -> None:
        super().__init__()
        if refine_layers < 1:
            raise ValueError(f"refine_layers must be >= 1, got {refine_layers}")
        self.stages = nn.ModuleList(RefineStage(**stage_kwargs) for _ in range(refine_layers))

    def forward(self, feats: Sequence[Tensor], priors: Tensor) -> list[Tensor]:
        """Predictions of every stage, each (B, N, 4 + P). ``feats`` are fine -> coarse (as the
        neck returns them). At inference only the last stage's logits are computed."""
        coarse_to_fine = list(feats)[::-1]
        outputs = []
        feature = None
        for index, stage in enumerate(self.stages):
            last = index == len(self.stages) - 1
            predictions, feature = stage(
                coarse_to_fine, priors, feature, with_cls=self.training or last
            )
            outputs.append(predictions)
            priors = predictions.detach()
        return outputs
