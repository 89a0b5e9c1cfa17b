"""From network predictions to lanes: score threshold, lane NMS, extension to the image border,
mapping back to the original image.

A prediction row is ``[logit_0, logit_1, start_y, length, x_0 .. x_{P-1}]``: start_y and length
are fractions of the ``P - 1`` row strips, xs are normalised by the input width and rows run
bottom -> top.

Lane NMS is the greedy LaneATT/CLRNet lane NMS with the integer rounding of the reference CUDA
kernel, so that the same lanes survive. The decoding itself is ``decode_np.decode_lanes``
(numpy only, what an ONNX deployment runs); these are its torch entry points, so the torch and
the ONNX paths decode the same predictions to the same lanes, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from src.lane import Lane
from src.models.common.decode import decode_with

from . import decode_np
from .decode_np import lane_nms

__all__ = ["decode_predictions", "lane_nms", "lane_overlaps", "to_nms_rows"]


def to_nms_rows(predictions: Tensor, img_w: int) -> Tensor:
    """Rows in the kernel's layout: ``[_, _, start_row, end_row, xs in pixels]`` where
    ``end_row = start_row + length_rows - 1`` (fractional; rounded inside ``lane_overlaps``)."""
    n_strips = predictions.shape[-1] - 5
    rows = predictions.clone()
    rows[..., 2:4] *= n_strips
    rows[..., 3] = rows[..., 2] + rows[..., 3] - 1
    rows[..., 4:] *= img_w
    return rows


def lane_overlaps(rows: Tensor, threshold: float) -> Tensor:
    """Pairwise "same lane" test for rows in the kernel layout (..., N, 4 + P) -> (..., N, N),
    on the rows' device (see ``decode_np.lane_overlaps``)."""
    overlaps = decode_np.lane_overlaps(rows.detach().float().cpu().numpy(), threshold)
    return torch.from_numpy(overlaps).to(rows.device)


def decode_predictions(
    predictions: Tensor,
    cut_heights: Sequence[int],
    ori_heights: Sequence[int],
    img_w: int,
    conf_threshold: float = 0.4,
    nms_thres: float = 50.0,
    max_lanes: int = 4,
) -> list[list[Lane]]:
    """Decode a batch of predictions (B, N, 4 + P) into lanes, one list per image (best score
    first); see ``src.models.common.decode.decode_with``."""
    return decode_with(
        decode_np.decode_lanes,
        predictions,
        cut_heights,
        ori_heights,
        img_w=img_w,
        conf_threshold=conf_threshold,
        nms_thres=nms_thres,
        max_lanes=max_lanes,
    )
