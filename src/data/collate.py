"""Batching of lane samples: tensors are stacked, metadata stays a list of dicts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def collate_lanes(batch: Sequence[dict]) -> dict:
    """Stack a list of dataset items: every tensor entry ("img" (B, 3, H, W) and the model's
    targets) is stacked, a list of tensors (one per feature level) becomes a list of stacks, and
    "meta" stays a list of dicts, one per sample."""
    if not batch:
        raise ValueError("collate_lanes got an empty batch")
    out: dict = {}
    for key, first in batch[0].items():
        if key == "meta":
            continue
        if isinstance(first, list):
            out[key] = [torch.stack([item[key][i] for item in batch]) for i in range(len(first))]
        else:
            out[key] = torch.stack([item[key] for item in batch])
    out["meta"] = [item["meta"] for item in batch]
    return out
