"""Validate a whole lane dataset: every label and every image.

    python scripts/check_dataset.py --dataset tusimple --root /data/tusimple
    python scripts/check_dataset.py --dataset culane --root /data/CULane --split train val
    python scripts/check_dataset.py --dataset llamas --root /data/llamas --split valid
    python scripts/check_dataset.py --dataset curvelanes --root /data/Curvelanes
    python scripts/check_dataset.py --dataset custom --root /data/mine --size 1920x1080 \\
        --max-lanes 6

Prints, per split, the number of samples, lanes per image, image sizes and every problem with
its file:line: unreadable or non-UTF-8 label and list files, malformed lines or JSON fields,
empty label files, TuSimple h_samples that do not increase, label points more than one image size
outside the image (src/data/lane_checks.py), missing, undecodable or truncated images, and images
whose size is not the dataset's ori_w x ori_h (TuSimple 1280x720, CULane 1640x590, LLAMAS
1276x717; CurveLanes: one of 2560x1440, 1570x660, 1280x720; ``--size WxH`` for another, ``--size
any`` for none, which also skips the point check; custom data: any size unless ``--size`` is
given). Notes follow: LLAMAS lanes the official evaluator would assert on, CurveLanes images with
more than 4 lanes, and for custom data the lanes training keeps and what ``--max-lanes`` (default
4) cuts. Exit status 1 when there are problems, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from src.data import culane, llamas, tusimple
from src.data.check import check_culane, check_tusimple, format_report
from src.data.check_formats import check_curvelanes, check_custom, check_llamas

DEFAULT_SPLITS = {
    "tusimple": ["train", "val", "test"],
    "culane": ["train", "val", "test"]
    + [f"test_split/{Path(p).stem}" for p in culane.CATEGORY_FILES.values()],
    "llamas": ["train", "valid", "test"],
    "curvelanes": ["train", "valid", "test"],
    "custom": [],  # every list/<split>.txt
}

DEFAULT_SIZES = {
    "tusimple": tusimple.IMAGE_SIZE,
    "culane": culane.IMAGE_SIZE,
    "llamas": llamas.IMAGE_SIZE,
    "curvelanes": None,  # three sizes, checked by the CurveLanes check itself
    "custom": "any",
}


def image_size(text: str) -> tuple[int, int] | str:
    """``WxH`` -> (w, h); ``any`` -> "any" (argparse type)."""
    if text.strip().lower() == "any":
        return "any"
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WxH (e.g. 1640x590) or 'any', got {text!r}"
        ) from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"expected a positive WxH, got {text!r}")
    return width, height


def custom_splits(root: Path) -> list[str]:
    """The splits of a custom dataset: every ``list/<split>.txt`` (``train_gt`` as train)."""
    stems = sorted(p.stem for p in (root / "list").glob("*.txt"))
    if "train_gt" in stems:
        stems.remove("train_gt")
        if "train" not in stems:
            stems.insert(0, "train")
    return stems or ["train"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(DEFAULT_SPLITS))
    parser.add_argument("--root", required=True, type=Path, help="dataset root directory")
    parser.add_argument("--split", nargs="+", help="splits to check (default: all)")
    parser.add_argument(
        "--no-decode",
        action="store_true",
        help="only check that images exist (decoding all of CULane takes minutes)",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes decoding images"
    )
    parser.add_argument(
        "--size",
        type=image_size,
        help="expected image size WxH, or 'any' (default: the dataset's, as ori_w x ori_h in "
        "conf/dataset/<dataset>.yaml; custom: any)",
    )
    parser.add_argument(
        "--max-lanes", type=int, default=4, help="custom: the max_lanes to report cuts for"
    )
    parser.add_argument(
        "--max-problems", type=int, default=50, help="problems listed per split (all are counted)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset == "curvelanes" and args.size is not None:
        parser.error("--size does not apply to curvelanes (its three sizes are fixed)")
    root = args.root.expanduser().absolute()
    if not root.is_dir():
        print(f"{args.dataset} root {root} does not exist", file=sys.stderr)
        return 1
    splits = args.split or DEFAULT_SPLITS[args.dataset] or custom_splits(root)
    size = DEFAULT_SIZES[args.dataset] if args.size is None else args.size
    size = None if size == "any" else size
    decode = not args.no_decode
    if args.dataset == "curvelanes":
        reports = check_curvelanes(root, splits, decode, args.workers)
    elif args.dataset == "custom":
        reports = check_custom(root, splits, decode, args.workers, size, args.max_lanes)
    else:
        check = {"tusimple": check_tusimple, "culane": check_culane, "llamas": check_llamas}
        reports = check[args.dataset](root, splits, decode, args.workers, size)
    print(format_report(args.dataset, root, reports, args.max_problems))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
