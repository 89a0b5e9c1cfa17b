"""Lane-detection metrics equal to the official tools: TuSimple and CULane.

* ``TuSimpleMetric``, ``CULaneMetric`` (``metric``): torchmetrics metrics, states summed
  across processes.
* ``tusimple_image_scores`` (``tusimple``), ``culane_image_counts`` (``culane``): the
  per-image definitions; ``culane_cpp``: the original C++ tool's recipe.
* ``writers``: the official prediction formats; ``files``: scoring files on disk (the command
  line tool is scripts/evaluate.py).

Definitions, and what happens on inputs the reference evaluators crash on, are in the module
docstrings of ``tusimple``, ``culane`` and ``files``. Names are imported on first use, so
``src.metrics.files`` and the command line tool run without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "metric": ("CULaneMetric", "TuSimpleMetric"),
    "culane": (
        "CULANE_CATEGORIES",
        "CULANE_IMG_SIZE",
        "CULANE_LANE_WIDTH",
        "EVALUATORS",
        "MF1_IOU_THRESHOLDS",
        "culane_image_counts",
        "culane_iou_matrix",
        "culane_summary",
        "matched_ious",
        "summarize_counts",
        "threshold_key",
    ),
    "tusimple": ("tusimple_f1", "tusimple_image_scores", "tusimple_summary"),
    "files": (
        "CULaneFileScore",
        "culane_tool_output",
        "read_culane_lanes",
        "read_culane_list",
        "score_culane_files",
        "score_tusimple_files",
    ),
    "writers": (
        "culane_label_name",
        "culane_lane_points",
        "culane_lines_text",
        "tusimple_lane_xs",
        "tusimple_record",
        "write_culane_prediction",
        "write_tusimple_predictions",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "CULANE_CATEGORIES",
    "CULANE_IMG_SIZE",
    "CULANE_LANE_WIDTH",
    "CULaneFileScore",
    "CULaneMetric",
    "EVALUATORS",
    "MF1_IOU_THRESHOLDS",
    "TuSimpleMetric",
    "culane_image_counts",
    "culane_iou_matrix",
    "culane_label_name",
    "culane_lane_points",
    "culane_lines_text",
    "culane_summary",
    "culane_tool_output",
    "matched_ious",
    "read_culane_lanes",
    "read_culane_list",
    "score_culane_files",
    "score_tusimple_files",
    "summarize_counts",
    "threshold_key",
    "tusimple_f1",
    "tusimple_image_scores",
    "tusimple_lane_xs",
    "tusimple_record",
    "tusimple_summary",
    "write_culane_prediction",
    "write_tusimple_predictions",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from src.metrics.culane import (
        CULANE_CATEGORIES,
        CULANE_IMG_SIZE,
        CULANE_LANE_WIDTH,
        EVALUATORS,
        MF1_IOU_THRESHOLDS,
        culane_image_counts,
        culane_iou_matrix,
        culane_summary,
        matched_ious,
        summarize_counts,
        threshold_key,
    )
    from src.metrics.files import (
        CULaneFileScore,
        culane_tool_output,
        read_culane_lanes,
        read_culane_list,
        score_culane_files,
        score_tusimple_files,
    )
    from src.metrics.metric import CULaneMetric, TuSimpleMetric
    from src.metrics.tusimple import tusimple_f1, tusimple_image_scores, tusimple_summary
    from src.metrics.writers import (
        culane_label_name,
        culane_lane_points,
        culane_lines_text,
        tusimple_lane_xs,
        tusimple_record,
        write_culane_prediction,
        write_tusimple_predictions,
    )
