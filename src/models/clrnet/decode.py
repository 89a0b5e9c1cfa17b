"""From CLRNet predictions to lanes: the torch entry point of ``decode_np.decode_lanes`` (score
threshold, the reference's lane NMS, mapping to the original image), so the torch and the ONNX
paths decode the same predictions to the same lanes, bit for bit."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from src.lane import Lane
from src.models.common.decode import decode_with

from . import decode_np


def decode_predictions(
    predictions: Tensor,
    cut_heights: Sequence[int],
    ori_heights: Sequence[int],
    img_w: int,
    conf_threshold: float = 0.4,
    nms_thres: float = 50.0,
    max_lanes: int = 4,
) -> list[list[Lane]]:
    """Decode a batch of predictions (B, N, 6 + P) into lanes, one list per image (best score
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
