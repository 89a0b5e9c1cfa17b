"""curves.png of a run: the training losses and the validation metric over the iterations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


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
