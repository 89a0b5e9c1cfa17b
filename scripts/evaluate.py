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

Legal data that silently changes the score is counted and reported on stderr as warnings (see
src/metrics/file_checks.py): TuSimple images with more predicted lanes than GT + 2 or a
run_time over 200 ms (the benchmark scores them Accuracy 0, FN 1), a TuSimple file without a
single lane (F1 0.667), a CULane list naming an image twice, missing CULane prediction files.
``--strict`` refuses such files instead (exit status 2), before scoring.
"""

from __future__ import annotations

import argparse
import json
import sys

from src.metrics.culane import iou_threshold_problems
from src.metrics.file_checks import Findings
from src.metrics.files import (
    CULaneFileScore,
    culane_tool_output,
    score_culane_files,
    score_tusimple_files,
)
from src.metrics.files_curvelanes import score_curvelanes_files
from src.metrics.files_llamas import score_llamas_files

STRICT_HELP = (
    "refuse files whose data is legal but silently changes the score (images the benchmark "
    "zeroes, no lane at all, images listed twice, missing prediction files) instead of warning"
)


def iou_threshold(text: str) -> float:
    """argparse type: one IoU threshold in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    problems = iou_threshold_problems([value])
    if problems:
        raise argparse.ArgumentTypeError(problems[0])
    return value


def image_size(text: str) -> tuple[int, int]:
    """argparse type: WxH in pixels, both >= 1."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) and int(height)):
        raise argparse.ArgumentTypeError(f"expected WxH in pixels such as 1640x590, got {text!r}")
    return int(width), int(height)


def lane_width(text: str) -> int:
    """argparse type: the drawn lane width, a whole number of pixels >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole pixels, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"the lane width must be >= 1 pixel, got {value}")
    return value


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
    cul.add_argument(
        "--iou", type=iou_threshold, nargs="+", default=[0.5], help="IoU thresholds in [0, 1)"
    )
    cul.add_argument(
        "--evaluator",
        choices=("python", "cpp"),
        default="python",
        help="recipe: the Python evaluator of LaneATT/CLRNet/SRLane (default) or the C++ tool",
    )
    cul.add_argument("--width", type=lane_width, default=30, help="lane width in pixels")
    cul.add_argument(
        "--size",
        type=image_size,
        default=(1640, 590),
        help="WxH of the images, the canvas lanes are drawn on (CULane 1640x590; your own data "
        "in CULane's format: its dataset.ori_w x ori_h)",
    )
    for sub_parser in (tus, cul):
        sub_parser.add_argument("--strict", action="store_true", help=STRICT_HELP)
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
            "--iou", type=iou_threshold, nargs="+", default=[0.5], help="IoU thresholds"
        )
        sub_parser.add_argument("--width", type=lane_width, default=helps[2], help=helps[1])
    return parser


def score(args: argparse.Namespace, findings: Findings) -> dict:
    """The JSON result of the chosen subcommand; missing prediction files reported on stderr
    (CULane and TuSimple: through ``findings``, with the other legal-but-suspicious data)."""
    if args.dataset == "tusimple":
        return score_tusimple_files(args.pred, args.gt, findings)
    files: CULaneFileScore
    if args.dataset == "culane":
        files = score_culane_files(
            args.pred,
            args.gt,
            args.list,
            iou_thresholds=args.iou,
            evaluator=args.evaluator,
            width=args.width,
            findings=findings,
            img_size=(args.size[1], args.size[0]),
        )
        return culane_tool_output(files.result)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    repeated = args.dataset != "tusimple" and iou_threshold_problems(args.iou)
    if repeated:  # each threshold is valid alone (its type checked it): a repeated one
        parser.error(f"argument --iou: {repeated[0]}")
    findings = Findings(strict=getattr(args, "strict", False))
    try:
        result = score(args, findings)
        for message in findings.messages():
            print(f"warning: {message}", file=sys.stderr)
    except (OSError, ValueError) as err:  # FileFormatError is a ValueError
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        print(f"error: {'; '.join(lines) or type(err).__name__}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
