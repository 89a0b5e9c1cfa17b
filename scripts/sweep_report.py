"""Write the report of a sweep: results.csv, results_by_seed.csv and report.html in its dir.

    python scripts/sweep_report.py multirun/2026-11-26_09-11-42

The same files are written at the end of every --multirun (src/sweeps/report.py); run this to
refresh them while a sweep runs, or after a sweep that stopped early. Exit status 2 when the dir
is not a sweep dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.sweeps.records import NotASweepDir
from src.sweeps.report import write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep dir (hydra.sweep.dir)")
    parser.add_argument(
        "--ended",
        action="store_true",
        help="the sweep has ended: a job without a result and without a run lock is failed "
        "even if it wrote its log moments ago",
    )
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.sweep_dir, sweep_ended=args.ended)
    except NotASweepDir as err:
        print(f"sweep_report: {err}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
