"""Lane-detection metrics equal to the official tools: TuSimple and CULane.

* ``TuSimpleMetric``, ``CULaneMetric``: torchmetrics metrics (states summed across processes).
* ``tusimple_image_scores``, ``culane_image_counts``: the per-image definitions.
* Writers for the official prediction formats (``writers``) and scoring of files on disk
  (``files``; the command line tool is scripts/evaluate.py).

Definitions, and what happens on inputs the reference evaluators crash on, are in the module
docstrings of ``tusimple`` and ``culane``.
"""

from src.metrics.culane import (
    CULANE_CATEGORIES,
    CULANE_IMG_SIZE,
    CULANE_LANE_WIDTH,
    EVALUATORS,
    MF1_IOU_THRESHOLDS,
    CULaneMetric,
    culane_image_counts,
    culane_iou_matrix,
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
from src.metrics.tusimple import TuSimpleMetric, tusimple_f1, tusimple_image_scores
from src.metrics.writers import (
    culane_label_name,
    culane_lane_points,
    culane_lines_text,
    tusimple_lane_xs,
    tusimple_record,
    write_culane_prediction,
    write_tusimple_predictions,
)

__all__ = [
    "CULANE_CATEGORIES",
    "CULANE_IMG_SIZE",
    "CULANE_LANE_WIDTH",
    "EVALUATORS",
    "MF1_IOU_THRESHOLDS",
    "CULaneFileScore",
    "CULaneMetric",
    "TuSimpleMetric",
    "culane_image_counts",
    "culane_iou_matrix",
    "culane_label_name",
    "culane_lane_points",
    "culane_lines_text",
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
    "write_culane_prediction",
    "write_tusimple_predictions",
]
