"""Whole-dataset validation of LLAMAS, CurveLanes and custom (CULane-format) trees, for
scripts/check_dataset.py: every label and every image, all problems collected with their
``file:line`` into the same reports as ``check`` (TuSimple, CULane).

Besides problems, reports carry notes: LLAMAS lanes left out of the ground truth (the official
evaluator's assert case), CurveLanes images with more than 4 lanes, and for custom data a
summary of what training keeps and what ``max_lanes`` cuts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import curvelanes, custom, llamas
from .check import Entry, SplitReport, check_images
from .culane import culane_train_lanes, label_path_for
from .errors import DatasetError, numbered_lines


def _llamas_entries(root: Path, folder: str, report: SplitReport) -> list[Entry]:
    """Entries of a labelled LLAMAS split; label problems and asserted lanes recorded."""
    label_dir = root / "labels" / folder
    if not label_dir.is_dir():
        report.problems.append(
            f"LLAMAS label folder {label_dir} does not exist: expected "
            f"{llamas.expected_layout()} ({llamas.DOWNLOAD_HINT})"
        )
        return []
    entries, asserted = [], []
    for label_path in llamas.files_under(label_dir):
        try:
            lanes = llamas.read_label(str(label_path))
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        asserted.extend(f"{label_path} ({name})" for name in lanes.dropped_above)
        img_path = root / llamas.image_name_for(root, label_path)
        entries.append(Entry(str(img_path), str(label_path), len(lanes.lanes)))
    if asserted:
        report.notes.append(
            f"{len(asserted)} lane(s) left out of the ground truth, with fewer than 2 points in "
            f"rows 300..716 (the official evaluator stops on an assert there), e.g. {asserted[0]}"
        )
    return entries


def check_llamas(
    root: Path,
    splits: list[str],
    decode: bool,
    workers: int,
    expected_size: tuple[int, int] | None = llamas.IMAGE_SIZE,
) -> list[SplitReport]:
    """Check the labels of ``splits`` (test: its images only) and every image."""
    reports = []
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            folder = llamas.split_folder(split)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        if folder == "test":
            images = llamas.files_under(root / "color_images" / folder, llamas.IMAGE_SUFFIX)
            entries = [Entry(str(path), str(path), 0) for path in images]
        else:
            entries = _llamas_entries(root, folder, report)
        report.samples = len(entries)
        if not entries:
            report.problems.append(f"split {split!r} has no samples")
        check_images(report, entries, decode, workers, expected_size)
    return reports


def _curvelanes_entries(split_dir: Path, report: SplitReport) -> list[Entry]:
    list_path = split_dir / f"{split_dir.name}.txt"
    if not list_path.is_file():
        report.problems.append(
            f"CurveLanes list {list_path} is missing: expected "
            f"{curvelanes.expected_layout(split_dir.name)} ({curvelanes.DOWNLOAD_HINT})"
        )
        return []
    labelled = split_dir.name != "test" or (split_dir / "labels").is_dir()
    entries, seen = [], {}
    for text, where in numbered_lines(list_path, problems=report.problems):
        entry = text.split()[0].lstrip("/")
        if entry in seen:
            report.problems.append(f"{where}: {entry} already listed at {seen[entry]}")
        seen[entry] = where
        lanes: tuple = ()
        if labelled:
            label_path = curvelanes.curvelanes_label_path(split_dir, entry)
            if not label_path.is_file():
                report.problems.append(f"{where}: label file {label_path} is missing")
                continue
            try:
                lanes, _ = curvelanes.load_lanes(str(label_path))
            except DatasetError as err:
                report.problems.append(str(err))
                continue
        entries.append(Entry(str(split_dir / entry), where, len(lanes)))
    return entries


def check_curvelanes(
    root: Path, splits: list[str], decode: bool, workers: int
) -> list[SplitReport]:
    """Check the lists, labels and images of ``splits``; every image must have one of the
    three CurveLanes sizes (read from the header without ``decode``)."""
    sizes = frozenset(curvelanes.CROP_OFFSETS)
    reports = []
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            split_dir = root / curvelanes.split_folder(split)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        entries = _curvelanes_entries(split_dir, report)
        report.samples = len(entries)
        if not entries:
            report.problems.append(f"split {split!r} has no samples")
        check_images(report, entries, decode, workers, sizes, header_sizes=True)
        many = [e.lanes for e in entries if e.lanes > 4]
        if many:
            report.notes.append(
                f"{len(many)} image(s) with more than 4 lanes (up to {max(many)}): set "
                f"max_lanes >= {max(many)} to train on all of them"
            )
    return reports


def _custom_summary(report: SplitReport, kept: Counter, dropped: int, max_lanes: int | None):
    """Notes on what training keeps of the labelled lanes, and what ``max_lanes`` cuts."""
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(kept.items()))
    report.notes.append(f"lanes per image kept for training: {counts or '-'}")
    if dropped:
        report.notes.append(
            f"{dropped} lane(s) not trained on: fewer than 3 points with x, y >= 0 "
            "(CULane's training filter); they still count in the metric"
        )
    if max_lanes is not None and kept:
        over = {n: k for n, k in kept.items() if n > max_lanes}
        cut = sum((n - max_lanes) * k for n, k in over.items())
        report.notes.append(
            f"max_lanes={max_lanes}: {cut} lane(s) in {sum(over.values())} image(s) beyond it "
            f"(not trained as lanes); the most in one image: {max(kept)}"
        )


def check_custom(
    root: Path,
    splits: list[str],
    decode: bool,
    workers: int,
    expected_size: tuple[int, int] | None = None,
    max_lanes: int | None = None,
) -> list[SplitReport]:
    """Check a CULane-format dataset of any size (``custom``): list files, every label and
    image (size ``expected_size`` (w, h), None: any; sizes are always reported), plus a
    summary of the lanes training keeps and what ``max_lanes`` cuts."""
    reports = []
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            list_path = custom.custom_list_path(root, split)
            entries_text = list(numbered_lines(list_path, problems=report.problems))
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        entries, kept, dropped = [], Counter(), 0
        for text, where in entries_text:
            img_path = str(root / text.split()[0].lstrip("/"))
            try:
                lanes = custom.read_custom_label(label_path_for(img_path), where)
            except DatasetError as err:
                report.problems.append(str(err))
                continue
            train = culane_train_lanes(lanes)
            kept[len(train)] += 1
            dropped += len(lanes) - len(train)
            entries.append(Entry(img_path, where, len(lanes)))
        report.samples = len(entries)
        if not entries:
            report.problems.append(f"split {split!r} has no samples ({list_path})")
        check_images(report, entries, decode, workers, expected_size, header_sizes=True)
        _custom_summary(report, kept, dropped, max_lanes)
    return reports
