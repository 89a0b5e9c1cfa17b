"""From predictions to lanes in torch: the entry point a model's ``decode`` calls, around its
numpy-only decoder (``decode_np.decode_lanes``, the file a deployment of the ONNX export copies),
so the torch and the ONNX paths decode the same predictions to the same lanes, bit for bit."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from src.lane import Lane


@torch.no_grad()
def decode_with(
    decode_lanes: Callable[..., Any],
    predictions: Tensor,
    cut_heights: Sequence[int],
    ori_heights: Sequence[int],
    **decode_args: Any,
) -> list[list[Lane]]:
    """Lanes per image (best score first) of a batch of predictions (B, N, D) by the numpy
    decoder ``decode_lanes``. ``cut_heights`` / ``ori_heights``: per image, the rows cut from
    the top of the original image before resizing and the original image height (pixels)."""
    # One transfer to the CPU for the whole batch; the decoding works on a few kB per image.
    numpy = predictions.detach().float().cpu().numpy()
    decoded = decode_lanes(numpy, cut_heights, ori_heights, **decode_args)
    return [[Lane(points, score=score) for points, score in image] for image in decoded]
