"""Pictures for humans: lanes drawn on images, and the training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

PRED_COLOR = (0, 0, 255)  # BGR red
GT_COLOR = (0, 200, 0)  # BGR green


def draw_lanes(
    image_bgr: np.ndarray,
    pred_lanes: Sequence[np.ndarray],
    gt_lanes: Sequence[np.ndarray] = (),
    thickness: int = 4,
) -> np.ndarray:
    """A copy of the image with true lanes (green, under) and predicted lanes (red, over).

    Lanes are (N, 2) arrays of (x, y) pixels of this image.
    """
    canvas = image_bgr.copy()
    for lanes, color, width in (
        (gt_lanes, GT_COLOR, thickness + 4),
        (pred_lanes, PRED_COLOR, thickness),
    ):
        for lane in lanes:
            if len(lane) < 2:
                continue
            points = np.round(np.asarray(lane, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [points], isClosed=False, color=color, thickness=width)
    return canvas


def plot_curves(history: Sequence[dict[str, float]], path: Path, metric_name: str) -> None:
    """Training losses and the validation metric against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "train/loss" in h]
    val = [h for h in history if f"val/{metric_name}" in h]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    loss_keys = sorted(
        {k for h in train for k in h if k.startswith("train/") and k.endswith("loss")}
    )
    for key in loss_keys:
        points = [(h["step"], h[key]) for h in train if key in h]
        ax_loss.plot(*zip(*points, strict=True), label=key.removeprefix("train/"))
    ax_loss.set_xlabel("iteration")
    ax_loss.set_yscale("log")
    ax_loss.set_title("training losses")
    if loss_keys:
        ax_loss.legend()
    if val:
        points = [(h["step"], h[f"val/{metric_name}"]) for h in val]
        ax_val.plot(*zip(*points, strict=True), marker="o")
    ax_val.set_xlabel("iteration")
    ax_val.set_title(f"validation {metric_name}")
    ax_val.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
