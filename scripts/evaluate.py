"""Score lane predictions on disk like the official tools; prints one JSON object.

    python scripts/evaluate.py tusimple --pred PRED.json --gt GT.json
        -> {"Accuracy": ..., "FP": ..., "FN": ..., "F1": ...}
    python scripts/evaluate.py culane --pred PRED_DIR --gt GT_DIR --list LIST [--iou 0.5 0.55 ...]
        [--evaluator python|cpp] [--width 30]
        -> {"0.5": {"TP", "FP", "FN", "Precision", "Recall", "F1"}, ..., "mean": {...}}

    python scripts/evaluate.py llamas --pred PRED_DIR --gt LLAMAS_ROOT --split valid [--iou ...]
    python scripts/evaluate.py curvelanes --pred PRED_DIR --gt CURVELANES_ROOT --split valid
        [--iou ...]
        -> the same structure as culane

CULane list lines are image paths such as ``/driver_37_30frame/x.MP4/00000.jpg``; the lanes are
read from ``<dir>/driver_37_30frame/x.MP4/00000.lines.txt``. LLAMAS: labels
``LLAMAS_ROOT/labels/<split>/<recording>/<name>.json``, predictions
``PRED_DIR/<recording>/<name>.lines.txt`` (the official evaluator's file names). CurveLanes:
list ``ROOT/<split>/<split>.txt`` of ``images/<md5>.jpg``, labels
``ROOT/<split>/labels/<md5>.lines.json``, predictions ``PRED_DIR/images/<md5>.lines.txt`` in
original-image pixels (each image's size is read from ``ROOT/<split>/images``).

"mean" (given with several thresholds) sums TP/FP/FN over the thresholds and averages
Precision/Recall/F1 (its F1 is CLRNet's mF1). Missing prediction files are scored as images
without lanes and reported on stderr. Exit status 2 on bad input, with a one-line message on
stderr naming the file (and line) and what was expected.
"""

from __future__ import annotations

import argparse
import json
import sys

from src.metrics.files import (
    CULaneFileScore,
    culane_tool_output,
    score_culane_files,
    score_tusimple_files,
)
from src.metrics.files_curvelanes import score_curvelanes_files
from src.metrics.files_llamas import score_llamas_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    tus = sub.add_parser("tusimple", help="TuSimple JSON Lines predictions")
    tus.add_argument("--pred", required=True, help="prediction JSON Lines file")
    tus.add_argument("--gt", required=True, help="GT JSON Lines file (e.g. test_label.json)")
    cul = sub.add_parser("culane", help="CULane .lines.txt prediction tree")
    cul.add_argument("--pred", required=True, help="root of the prediction .lines.txt tree")
    cul.add_argument("--gt", required=True, help="CULane root (labels next to the images)")
    cul.add_argument("--list", required=True, help="list of image paths, e.g. list/test.txt")
    cul.add_argument("--iou", type=float, nargs="+", default=[0.5], help="IoU thresholds")
    cul.add_argument(
        "--evaluator",
        choices=("python", "cpp"),
        default="python",
        help="recipe: the Python evaluator of LaneATT/CLRNet/SRLane (default) or the C++ tool",
    )
    cul.add_argument("--width", type=int, default=30, help="lane width in pixels")
    for name, helps in (
        ("llamas", ("LLAMAS root (holding labels/<split>/)", "lane width in pixels", 30)),
        (
            "curvelanes",
            ("CurveLanes root (holding <split>/)", "lane width on the 224x224 canvas", 5),
        ),
    ):
        sub_parser = sub.add_parser(name, help=f"{name} .lines.txt prediction tree")
        sub_parser.add_argument("--pred", required=True, help="root of the prediction tree")
        sub_parser.add_argument("--gt", required=True, help=helps[0])
        sub_parser.add_argument("--split", default="valid", help="split with labels (valid)")
        sub_parser.add_argument(
            "--iou", type=float, nargs="+", default=[0.5], help="IoU thresholds"
        )
        sub_parser.add_argument("--width", type=int, default=helps[2], help=helps[1])
    return parser


def score(args: argparse.Namespace) -> dict:
    """The JSON result of the chosen subcommand; missing prediction files reported on stderr."""
    if args.dataset == "tusimple":
        return score_tusimple_files(args.pred, args.gt)
    files: CULaneFileScore
    if args.dataset == "culane":
        files = score_culane_files(
            args.pred,
            args.gt,
            args.list,
            iou_thresholds=args.iou,
            evaluator=args.evaluator,
            width=args.width,
        )
    else:
        scorer = score_llamas_files if args.dataset == "llamas" else score_curvelanes_files
        files = scorer(args.pred, args.gt, args.split, iou_thresholds=args.iou, width=args.width)
    if files.missing:
        print(
            f"warning: {len(files.missing)} of {files.n_images} prediction files missing "
            f"(scored as no lanes), e.g. {files.missing[0]}",
            file=sys.stderr,
        )
    return culane_tool_output(files.result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = score(args)
    except (OSError, ValueError) as err:  # FileFormatError is a ValueError
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        print(f"error: {'; '.join(lines) or type(err).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
