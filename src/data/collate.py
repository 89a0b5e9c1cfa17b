"""Batching of lane samples: tensors are stacked, metadata stays a list of dicts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def collate_lanes(batch: Sequence[dict]) -> dict:
    """Stack a list of dataset items.

    Returns {"img": (B, 3, H, W), "gt_lane": (B, max_lanes, 4 + num_points),
    "gt_angle": [(B, H / s, W / s) per stride], "meta": [dict per sample]}; items without
    targets (prediction images) give only "img" and "meta". "img" keeps the items' dtype and
    layout (uint8 (B, H, W, 3) for the uint8 hand-overs, LaneDataset.set_handover); "augment"
    (hand-over "device") becomes a dict of stacked parameter tensors.
    """
    if not batch:
        raise ValueError("collate_lanes got an empty batch")
    out = {"img": torch.stack([item["img"] for item in batch])}
    if "gt_lane" in batch[0]:
        levels = len(batch[0]["gt_angle"])
        out["gt_lane"] = torch.stack([item["gt_lane"] for item in batch])
        out["gt_angle"] = [
            torch.stack([item["gt_angle"][i] for item in batch]) for i in range(levels)
        ]
    if "augment" in batch[0]:  # hand-over "device": the image steps' parameters
        out["augment"] = {
            key: torch.stack([item["augment"][key] for item in batch])
            for key in batch[0]["augment"]
        }
    out["meta"] = [item["meta"] for item in batch]
    return out
