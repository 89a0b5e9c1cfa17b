"""CLRNet's head: 192 learnable priors refined over three pyramid levels (coarse -> fine), and
the auxiliary segmentation decoder used in training.

Each stage pools features along the current priors (``grid_sample`` at ``sample_points`` rows,
align_corners=True), gathers context (``roi_gather.ROIGather``), and predicts two logits and
``[d start_y, d start_x, d theta, length, P x offsets]``. The prediction's xs are the straight
line of the refined (start_y, start_x, theta) plus the offsets; the next stage starts from that
straight line (before the offsets), detached.

Priors: eval mode uses the ``priors`` / ``priors_on_featmap`` buffers (stored in checkpoints);
training rebuilds them from ``prior_embeddings`` (so gradients reach the embeddings) and writes
them into the buffers, as the reference does. A checkpoint's buffers therefore lag its
embeddings by one optimiser step, and evaluation uses the buffers. With
``eval_priors_from_embeddings`` evaluation rebuilds them too, as CLRerNet does: then EMA weights
(which average the buffers, not the lines of the averaged embeddings) give EMA priors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .priors import init_prior_params, line_xs, priors_from_params, row_ys, sample_rows
from .roi_gather import ROIGather


def _fc_stack(dim: int, layers: int) -> nn.Sequential:
    """``layers`` x (Linear, ReLU): indices 0, 2, ... hold the weights, as in the reference."""
    modules: list[nn.Module] = []
    for _ in range(layers):
        modules += [nn.Linear(dim, dim), nn.ReLU()]
    return nn.Sequential(*modules)


class SegDecoder(nn.Module):
    """Training-only auxiliary segmentation: dropout, 1x1 conv to the classes, bilinear
    upsampling to the input size. ``class_weights`` ([bg_weight, 1, ...]) weight its loss."""

    def __init__(
        self, img_h: int, img_w: int, in_channels: int, num_classes: int, bg_weight: float
    ) -> None:
        super().__init__()
        self.size = (img_h, img_w)
        self.dropout = nn.Dropout2d(0.1)
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
        weights = torch.ones(num_classes)
        weights[0] = bg_weight
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(self.dropout(x))
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


class CLRHead(nn.Module):
    """Priors, refinement stages and the segmentation decoder (see the module docstring)."""

    def __init__(
        self,
        img_w: int,
        img_h: int,
        num_points: int,
        num_priors: int,
        refine_layers: int,
        sample_points: int,
        fc_hidden_dim: int,
        in_channels: int,
        num_seg_classes: int,
        seg_bg_weight: float,
        eval_priors_from_embeddings: bool = False,
        num_fc: int = 2,
    ) -> None:
        super().__init__()
        self.eval_priors_from_embeddings = eval_priors_from_embeddings
        # The layout of the pooled prior features (the model's, see CLRNet.set_memory_format).
        self.memory_format = torch.contiguous_format
        self.img_w, self.img_h = img_w, img_h
        self.num_priors = num_priors
        self.refine_layers = refine_layers
        self.fc_hidden_dim = fc_hidden_dim
        # Constants (recomputed, checked against reference checkpoints, not stored).
        rows = sample_rows(num_points, sample_points)
        self.register_buffer("sample_x_indexs", rows, persistent=False)
        self.register_buffer(
            "prior_feat_ys", torch.flip(1 - rows.float() / (num_points - 1), [-1]), persistent=False
        )
        self.register_buffer("prior_ys", row_ys(num_points), persistent=False)

        self.prior_embeddings = nn.Embedding(num_priors, 3)
        init_prior_params(self.prior_embeddings.weight)
        priors, on_featmap = self.priors_from_embeddings()
        self.register_buffer("priors", priors.detach().clone())
        self.register_buffer("priors_on_featmap", on_featmap.detach().clone())

        self.roi_gather = ROIGather(
            in_channels, num_priors, sample_points, fc_hidden_dim, refine_layers
        )
        self.cls_modules = _fc_stack(fc_hidden_dim, num_fc)
        self.reg_modules = _fc_stack(fc_hidden_dim, num_fc)
        self.cls_layers = nn.Linear(fc_hidden_dim, 2)
        self.reg_layers = nn.Linear(fc_hidden_dim, num_points + 4)
        for param in (*self.cls_layers.parameters(), *self.reg_layers.parameters()):
            nn.init.normal_(param, 0.0, 1e-3)
        self.seg_decoder = SegDecoder(
            img_h, img_w, in_channels * refine_layers, num_seg_classes, seg_bg_weight
        )

    def priors_from_embeddings(self) -> tuple[Tensor, Tensor]:
        """(priors (N, 6 + P), their xs at the sample rows (N, S)), differentiable."""
        params = self.prior_embeddings.weight
        priors = priors_from_params(params, self.prior_ys, self.img_w, self.img_h)
        return priors, priors[:, 6 + self.sample_x_indexs]

    def pool(self, feature_map: Tensor, sample_xs: Tensor) -> Tensor:
        """Features (B, C, N, S) at ``sample_xs`` (B, N, S, top -> bottom) on the sample rows
        (the reference's (B * N, C, S, 1), laid out as ``roi_gather.py`` explains)."""
        batch, num_priors, _ = sample_xs.shape
        # Sampling positions stay float32 under mixed precision (a bf16 x is off by ~1 px).
        with torch.autocast(feature_map.device.type, enabled=False):
            ys = self.prior_feat_ys.view(1, 1, -1).expand(batch, num_priors, -1)
            grid = torch.stack((sample_xs.float(), ys), dim=-1) * 2.0 - 1.0
            pooled = F.grid_sample(feature_map.float(), grid, align_corners=True)
        return pooled.contiguous(memory_format=self.memory_format)

    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], Tensor | None]:
        """``feats``: pyramid levels fine -> coarse (the neck's output). Returns each stage's
        predictions (B, N, 6 + P) and, in training, the segmentation logits (B, K, H, W)."""
        levels = list(feats[len(feats) - self.refine_layers :])[::-1]  # coarse -> fine
        batch = levels[0].shape[0]
        if self.training:
            priors, on_featmap = self.priors_from_embeddings()
            with torch.no_grad():
                self.priors.copy_(priors)
                self.priors_on_featmap.copy_(on_featmap)
        elif self.eval_priors_from_embeddings:
            priors, on_featmap = self.priors_from_embeddings()
        else:
            priors, on_featmap = self.priors, self.priors_on_featmap
        priors = priors.expand(batch, -1, -1)
        on_featmap = on_featmap.expand(batch, -1, -1)

        stage_predictions, pooled, cache = [], [], []
        for stage, feature_map in enumerate(levels):
            pooled.append(self.pool(feature_map, on_featmap.flip(-1)))
            prior_features = self.roi_gather(pooled, feature_map, stage, cache)
            prior_features = prior_features.reshape(-1, self.fc_hidden_dim)
            logits = self.cls_layers(self.cls_modules(prior_features)).float()
            reg = self.reg_layers(self.reg_modules(prior_features)).float()
            logits = logits.reshape(batch, self.num_priors, 2)
            reg = reg.reshape(batch, self.num_priors, -1)

            params = priors[..., 2:5] + reg[..., :3]
            lines = line_xs(params, self.prior_ys, self.img_w, self.img_h)
            length = reg[..., 3:4]
            stage_predictions.append(torch.cat((logits, params, length, lines + reg[..., 4:]), -1))
            # The next stage starts from the straight line, before the offsets.
            priors = torch.cat((logits, params, length, lines), dim=-1).detach()
            on_featmap = priors[..., 6 + self.sample_x_indexs]

        if not self.training:
            return stage_predictions, None
        size = levels[-1].shape[2:]
        seg_input = torch.cat(
            [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in levels],
            dim=1,
        )
        return stage_predictions, self.seg_decoder(seg_input)
