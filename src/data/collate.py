"""Batching of lane samples: tensors are stacked, metadata stays a list of dicts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def collate_lanes(batch: Sequence[dict]) -> dict:
    """Stack a list of dataset items: every tensor entry ("img" and the model's targets) is
    stacked, a list of tensors (one per feature level) becomes a list of stacks, a dict of
    tensors ("augment": the image steps' parameters of hand-over "device") a dict of stacks, and
    "meta" stays a list of dicts, one per sample. "img" keeps the items' dtype and layout (uint8
    (B, H, W, 3) for the uint8 hand-overs, LaneDataset.set_handover)."""
    if not batch:
        raise ValueError("collate_lanes got an empty batch")
    out: dict = {}
    for key, first in batch[0].items():
        if key == "meta":
            continue
        if isinstance(first, list):
            out[key] = [torch.stack([item[key][i] for item in batch]) for i in range(len(first))]
        elif isinstance(first, dict):
            out[key] = {k: torch.stack([item[key][k] for item in batch]) for k in first}
        else:
            out[key] = torch.stack([item[key] for item in batch])
    out["meta"] = [item["meta"] for item in batch]
    return out
