"""Whole-dataset validation for scripts/check_dataset.py: every label line and every image.

Unlike the readers, which stop at the first problem, this collects all problems (with
``file:line``) and statistics into a report.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from src.metrics.files_curvelanes import image_size

from . import culane, tusimple
from .errors import DatasetError, numbered_lines
from .pipeline import ImageReadError, read_image

# An expected image size (w, h), or the set of sizes a dataset allows.
SizeSpec = tuple[int, int] | frozenset[tuple[int, int]]


@dataclass
class SplitReport:
    """What was found in one split."""

    name: str
    samples: int = 0
    lanes_per_image: Counter = field(default_factory=Counter)
    image_sizes: Counter = field(default_factory=Counter)
    images_checked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts worth knowing, not problems


@dataclass
class Entry:
    img_path: str
    source: str
    lanes: int


def size_problem(img_path: str, size: tuple[int, int], expected: SizeSpec) -> str:
    """The message for an image whose (w, h) is not the dataset's ``ori_w x ori_h`` (or not
    one of its sizes, for a dataset with several)."""
    if isinstance(expected, tuple):
        return (
            f"image {img_path} is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]} "
            "(the dataset config's ori_w x ori_h)"
        )
    sizes = ", ".join(f"{w}x{h}" for w, h in sorted(expected))
    return f"image {img_path} is {size[0]}x{size[1]}, expected one of {sizes}"


def _matches(size: tuple[int, int], expected: SizeSpec) -> bool:
    return size == tuple(expected) if isinstance(expected, tuple) else size in expected


def _image_size(path: str) -> tuple[int, int] | str:
    """(w, h) of a decodable image, else the reason it cannot be used."""
    try:
        image = read_image(path)
    except ImageReadError as err:
        return str(err)
    return image.shape[1], image.shape[0]


def _header_size(path: str) -> tuple[int, int] | str:
    """(w, h) from an image's header (nothing decoded), else why it cannot be read."""
    if not os.path.isfile(path):
        return f"image {path} does not exist"
    try:
        height, width = image_size(path)
    except OSError as err:
        return str(err)
    return width, height


def check_images(
    report: SplitReport,
    entries: list[Entry],
    decode: bool,
    workers: int,
    expected_size: SizeSpec | None,
    header_sizes: bool = False,
) -> None:
    """Count lanes per image; check every image exists, or (``decode``) decodes, with size
    ``expected_size`` ((w, h), a set of them, or None: any size). Without ``decode``,
    ``header_sizes`` reads each size from the image header (cheap) and checks it too."""
    for entry in entries:
        report.lanes_per_image[entry.lanes] += 1
    if not decode and not header_sizes:
        for entry in entries:
            if not os.path.isfile(entry.img_path):
                report.problems.append(f"{entry.source}: image {entry.img_path} does not exist")
        return
    paths = [e.img_path for e in entries]
    read = _image_size if decode else _header_size
    if decode and workers > 1 and len(paths) > 64:
        with ProcessPoolExecutor(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
            results: Iterable = list(pool.map(read, paths, chunksize=32))
    else:
        results = map(read, paths)
    for entry, result in zip(entries, results, strict=True):
        if decode:
            report.images_checked += 1
        if isinstance(result, str):
            report.problems.append(f"{entry.source}: {result}")
        else:
            report.image_sizes[result] += 1
            if expected_size is not None and not _matches(result, expected_size):
                report.problems.append(
                    f"{entry.source}: {size_problem(entry.img_path, result, expected_size)}"
                )


def check_tusimple(
    root: Path,
    splits: list[str],
    decode: bool,
    workers: int,
    expected_size: tuple[int, int] | None = tusimple.IMAGE_SIZE,
) -> list[SplitReport]:
    """Check the label files of ``splits`` (empty ones included) and their images (size
    ``expected_size`` (w, h), None: any)."""
    reports = []
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            label_paths = tusimple.tusimple_label_files(root, split)
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        entries, seen = [], {}
        for label_path in label_paths:
            problems_before, lines = len(report.problems), 0
            for text, where in numbered_lines(label_path, problems=report.problems):
                lines += 1
                try:
                    raw_file, h_samples, xs = tusimple.parse_tusimple_line(
                        text, where, expected_size
                    )
                except DatasetError as err:
                    report.problems.append(str(err))
                    continue
                name = raw_file.lstrip("/")
                if name in seen:
                    report.problems.append(f"{where}: {name} already labelled at {seen[name]}")
                seen[name] = where
                lanes = tusimple.tusimple_lanes(h_samples, xs)
                entries.append(Entry(str(root / name), where, len(lanes)))
            if lines == 0 and len(report.problems) == problems_before:
                report.problems.append(str(tusimple.empty_label_file_error(label_path)))
        report.samples = len(entries)
        if not entries:
            report.problems.append(f"split {split!r} has no samples")
        check_images(report, entries, decode, workers, expected_size)
    return reports


def check_culane(
    root: Path,
    splits: list[str],
    decode: bool,
    workers: int,
    expected_size: tuple[int, int] | None = culane.IMAGE_SIZE,
) -> list[SplitReport]:
    """Check the list files of ``splits``, every label file and every image (size
    ``expected_size`` (w, h), None: any)."""
    reports = []
    for split in splits:
        report = SplitReport(split)
        reports.append(report)
        try:
            list_file, _ = culane.resolve_split(split)
            list_path = root / list_file
            if not list_path.is_file():
                raise DatasetError(f"list file {list_path} is missing ({culane.DOWNLOAD_HINT})")
        except DatasetError as err:
            report.problems.append(str(err))
            continue
        entries = []
        for text, where in numbered_lines(list_path, problems=report.problems):
            try:
                img_name, _ = culane.parse_culane_list_line(text, where)
                img_path = str(root / img_name)
                lanes = culane.read_label(culane.label_path_for(img_path), where, expected_size)
            except DatasetError as err:
                report.problems.append(str(err))
                continue
            entries.append(Entry(img_path, where, len(lanes)))
        report.samples = len(entries)
        if not entries:
            report.problems.append(f"split {split!r} has no samples")
        check_images(report, entries, decode, workers, expected_size)
    return reports


def format_report(dataset: str, root: Path, reports: list[SplitReport], limit: int) -> str:
    """Human-readable report: per split counts, lanes per image, image sizes, problems."""
    lines = [f"{dataset} dataset at {root}"]
    for report in reports:
        lanes = ", ".join(f"{k}: {v}" for k, v in sorted(report.lanes_per_image.items()))
        sizes = ", ".join(f"{w}x{h}: {n}" for (w, h), n in report.image_sizes.most_common())
        lines.append(
            f"- split {report.name}: {report.samples} samples, "
            f"{report.images_checked} images decoded"
        )
        lines.append(f"    lanes per image: {lanes or '-'}")
        if report.image_sizes:
            lines.append(f"    image sizes: {sizes}")
        lines.extend(f"    {note}" for note in report.notes)
        lines.append(f"    problems: {len(report.problems)}")
        for problem in report.problems[:limit]:
            lines.append(f"      {problem}")
        if len(report.problems) > limit:
            lines.append(f"      ... and {len(report.problems) - limit} more")
    total = sum(len(r.problems) for r in reports)
    lines.append("OK: no problems found" if total == 0 else f"FAILED: {total} problem(s)")
    return "\n".join(lines)
