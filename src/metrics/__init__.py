"""Lane-detection metrics equal to the official tools: TuSimple, CULane, LLAMAS, CurveLanes.

* ``TuSimpleMetric``, ``CULaneMetric``, ``LLAMASMetric``, ``CurveLanesMetric`` (``metric``):
  torchmetrics metrics, states summed across processes.
* ``tusimple_image_scores`` (``tusimple``), ``culane_image_counts`` (``culane``),
  ``llamas_image_counts`` (``llamas``), ``curvelanes_image_counts`` (``curvelanes``): the
  per-image definitions; ``culane_cpp``: the original C++ tool's recipe; ``llamas_labels``:
  the LLAMAS ground truth from its marker labels.
* ``writers``: the official prediction formats; ``files``, ``files_llamas``,
  ``files_curvelanes``: scoring files on disk (the command line tool is scripts/evaluate.py).

Definitions, and what happens on inputs the reference evaluators crash on, are in the module
docstrings. Names are imported on first use, so the file-scoring modules and the command line
tool run without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "metric": ("CULaneMetric", "CurveLanesMetric", "LLAMASMetric", "TuSimpleMetric"),
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
    "curvelanes": (
        "CURVELANES_CANVAS",
        "CURVELANES_IOU",
        "CURVELANES_LANE_WIDTH",
        "curvelanes_image_counts",
        "curvelanes_summary",
    ),
    "llamas": ("LLAMAS_IMG_SIZE", "LLAMAS_LANE_WIDTH", "llamas_image_counts"),
    "llamas_labels": ("LlamasLanes", "llamas_lanes", "read_llamas_label"),
    "tusimple": ("tusimple_f1", "tusimple_image_scores", "tusimple_summary"),
    "files": (
        "CULaneFileScore",
        "FileFormatError",
        "culane_tool_output",
        "read_culane_lanes",
        "read_culane_list",
        "score_culane_files",
        "score_tusimple_files",
    ),
    "files_curvelanes": ("read_curvelanes_label", "score_curvelanes_files"),
    "files_llamas": ("llamas_label_files", "score_llamas_files"),
    "writers": (
        "culane_label_name",
        "culane_lane_points",
        "culane_lines_text",
        "curvelanes_lane_points",
        "llamas_lane_points",
        "llamas_prediction_file",
        "tusimple_lane_xs",
        "tusimple_record",
        "write_culane_prediction",
        "write_curvelanes_prediction",
        "write_llamas_prediction",
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
    "CURVELANES_CANVAS",
    "CURVELANES_IOU",
    "CURVELANES_LANE_WIDTH",
    "CurveLanesMetric",
    "EVALUATORS",
    "FileFormatError",
    "LLAMASMetric",
    "LLAMAS_IMG_SIZE",
    "LLAMAS_LANE_WIDTH",
    "LlamasLanes",
    "MF1_IOU_THRESHOLDS",
    "TuSimpleMetric",
    "culane_image_counts",
    "culane_iou_matrix",
    "culane_label_name",
    "culane_lane_points",
    "culane_lines_text",
    "culane_summary",
    "culane_tool_output",
    "curvelanes_image_counts",
    "curvelanes_lane_points",
    "curvelanes_summary",
    "llamas_image_counts",
    "llamas_label_files",
    "llamas_lane_points",
    "llamas_lanes",
    "llamas_prediction_file",
    "matched_ious",
    "read_culane_lanes",
    "read_culane_list",
    "read_curvelanes_label",
    "read_llamas_label",
    "score_culane_files",
    "score_curvelanes_files",
    "score_llamas_files",
    "score_tusimple_files",
    "summarize_counts",
    "threshold_key",
    "tusimple_f1",
    "tusimple_image_scores",
    "tusimple_lane_xs",
    "tusimple_record",
    "tusimple_summary",
    "write_culane_prediction",
    "write_curvelanes_prediction",
    "write_llamas_prediction",
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
    from src.metrics.curvelanes import (
        CURVELANES_CANVAS,
        CURVELANES_IOU,
        CURVELANES_LANE_WIDTH,
        curvelanes_image_counts,
        curvelanes_summary,
    )
    from src.metrics.files import (
        CULaneFileScore,
        FileFormatError,
        culane_tool_output,
        read_culane_lanes,
        read_culane_list,
        score_culane_files,
        score_tusimple_files,
    )
    from src.metrics.files_curvelanes import read_curvelanes_label, score_curvelanes_files
    from src.metrics.files_llamas import llamas_label_files, score_llamas_files
    from src.metrics.llamas import LLAMAS_IMG_SIZE, LLAMAS_LANE_WIDTH, llamas_image_counts
    from src.metrics.llamas_labels import LlamasLanes, llamas_lanes, read_llamas_label
    from src.metrics.metric import CULaneMetric, CurveLanesMetric, LLAMASMetric, TuSimpleMetric
    from src.metrics.tusimple import tusimple_f1, tusimple_image_scores, tusimple_summary
    from src.metrics.writers import (
        culane_label_name,
        culane_lane_points,
        culane_lines_text,
        curvelanes_lane_points,
        llamas_lane_points,
        llamas_prediction_file,
        tusimple_lane_xs,
        tusimple_record,
        write_culane_prediction,
        write_curvelanes_prediction,
        write_llamas_prediction,
        write_tusimple_predictions,
    )
