"""Focal loss and focal matching cost, as CLRNet (and SRLane after it) use them.

Both detectors classify each lane proposal with two logits (background, lane). The loss is the
reference's copy of kornia's softmax focal loss; the matching cost is the sigmoid focal cost of
the lane logit used by the dynamic-k assignments (``src/models/*/assign.py``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def softmax_focal_loss(
    logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-6
) -> Tensor:
    """Per-sample focal loss on softmax probabilities; ``logits`` (..., C), ``labels`` (...).

    Matches the reference (a kornia copy): probabilities get ``+eps`` before the log, and the
    one-hot target gets ``+eps`` on every class.
    """
    prob = logits.softmax(-1) + eps
    focal = -alpha * (1 - prob).pow(gamma) * prob.log()
    target = F.one_hot(labels, num_classes=logits.shape[-1]).to(logits.dtype) + eps
    return (target * focal).sum(-1)


def focal_cost(
    logit: Tensor, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-12
) -> Tensor:
    """Focal matching cost of labelling a proposal positive; ``logit`` is the lane logit
    (index 1 of the two class logits, taken through a sigmoid as in the reference)."""
    prob = logit.sigmoid()
    neg_cost = -(1 - prob + eps).log() * (1 - alpha) * prob.pow(gamma)
    pos_cost = -(prob + eps).log() * alpha * (1 - prob).pow(gamma)
    return pos_cost - neg_cost
