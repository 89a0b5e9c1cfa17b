"""CLRNet's lane priors: straight lines given by (start_y, start_x, theta), and their initial
layout.

A prior (and every prediction) is the row
``[bg logit, fg logit, start_y, start_x, theta, length, x_0 .. x_{P-1}]``:
start_y is the height of the start point above the image bottom as a fraction of the image
height (= strips / (P - 1)), start_x is x / (img_w - 1), theta is the angle to the +x axis in
units of pi (0.5 = vertical), length is a fraction of the P - 1 strips, and the xs are sampled at
the rows ``row_ys`` = linspace(1, 0, P) (fractions of the height from the top; row 0 is the
image bottom), divided by img_w - 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def row_ys(num_points: int) -> Tensor:
    """The y of each prior row as a fraction of the image height from the top, bottom first."""
    return torch.linspace(1, 0, steps=num_points, dtype=torch.float32)


def sample_rows(num_points: int, sample_points: int) -> Tensor:
    """Indices of the prior rows where features are pooled (bottom-up, int64)."""
    return (
        torch.linspace(0, 1, steps=sample_points, dtype=torch.float32) * (num_points - 1)
    ).long()


def line_xs(params: Tensor, ys: Tensor, img_w: int, img_h: int) -> Tensor:
    """xs / (img_w - 1) of the straight lines ``params`` (..., 3) = (start_y, start_x, theta) at
    the rows ``ys`` (P,): (..., P).

    The operations keep the reference's order, so float32 results match it bit for bit; the
    1e-5 keeps tan away from 0 for horizontal lines.
    """
    start_y, start_x, theta = (params[..., i : i + 1] for i in range(3))
    rise = (1 - ys - start_y) * img_h
    return (start_x * (img_w - 1) + rise / torch.tan(theta * math.pi + 1e-5)) / (img_w - 1)


@torch.no_grad()
def init_prior_params(params: Tensor) -> None:
    """The reference's initial priors, written into ``params`` (num_priors, 3) in place.

    An eighth of the priors start on the left border (start_x 0, start_y spread over the lower
    half, theta 0.16 / 0.32), three quarters on the bottom border (start_x spread over the width,
    four angles 0.2 .. 0.8 each) and an eighth on the right border (theta 0.68 / 0.84).
    """
    num_priors = params.shape[0]
    side = num_priors // 8
    bottom = num_priors * 3 // 4
    if side // 2 < 2:
        raise ValueError(f"need at least 32 priors (4 per side column), got {num_priors}")
    side_step = 0.5 / (side // 2 - 1)
    bottom_step = 1 / (bottom // 4 + 1)
    for i in range(side):
        params[i] = torch.tensor([(i // 2) * side_step, 0.0, 0.16 if i % 2 == 0 else 0.32])
    for i in range(side, side + bottom):
        params[i] = torch.tensor([0.0, ((i - side) // 4 + 1) * bottom_step, 0.2 * (i % 4 + 1)])
    for i in range(side + bottom, num_priors):
        params[i] = torch.tensor(
            [((i - side - bottom) // 2) * side_step, 1.0, 0.68 if i % 2 == 0 else 0.84]
        )


def priors_from_params(params: Tensor, ys: Tensor, img_w: int, img_h: int) -> Tensor:
    """Prior rows (num_priors, 6 + P) from (num_priors, 3) parameters: zero logits and length,
    the parameters, the line's xs."""
    rows = params.new_zeros(params.shape[0], 6 + ys.numel())
    xs = line_xs(params, ys, img_w, img_h)
    return torch.cat((rows[:, :2], params, rows[:, 5:6], xs), dim=-1)
