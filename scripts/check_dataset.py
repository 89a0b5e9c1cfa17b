"""Validate a whole TuSimple or CULane dataset: every label line and every image.

    python scripts/check_dataset.py --dataset tusimple --root /data/tusimple
    python scripts/check_dataset.py --dataset culane --root /data/CULane --split train val

Prints, per split, the number of samples, lanes per image, image sizes and every problem with
its file:line. Exit status 1 when there are problems, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.data import culane  # noqa: E402
from src.data.check import check_culane, check_tusimple, format_report  # noqa: E402

DEFAULT_SPLITS = {
    "tusimple": ["train", "val", "test"],
    "culane": ["train", "val", "test"]
    + [f"test_split/{Path(p).stem}" for p in culane.CATEGORY_FILES.values()],
}


def main(argv: list[str] | None = None) -> int:
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
        "--max-problems", type=int, default=50, help="problems listed per split (all are counted)"
    )
    args = parser.parse_args(argv)

    root = args.root.expanduser().absolute()
    if not root.is_dir():
        print(f"{args.dataset} root {root} does not exist", file=sys.stderr)
        return 1
    splits = args.split or DEFAULT_SPLITS[args.dataset]
    check = check_tusimple if args.dataset == "tusimple" else check_culane
    reports = check(root, splits, not args.no_decode, args.workers)
    print(format_report(args.dataset, root, reports, args.max_problems))
    return 1 if any(r.problems for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
