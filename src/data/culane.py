"""CULane reader: list files + per-image ``.lines.txt`` labels -> LaneSample records.

Lists: ``list/train_gt.txt`` (image, segmentation label, 4 lane-existence flags),
``list/val.txt`` and ``list/test.txt`` (image paths), and the nine category lists
``list/test_split/test<k>_<name>.txt`` that partition the test set. Labels sit next to each
image as ``<frame>.lines.txt``: one lane per line, ``x1 y1 x2 y2 ...`` in pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from src.metrics.file_checks import check_culane_points

from .errors import DatasetError, absent, decode_text, numbered_lines, read_bytes, split_lines
from .lane_checks import warn_repeated_images
from .samples import LaneSample

LIST_FILES = {
    "train": "list/train_gt.txt",
    "val": "list/val.txt",
    "test": "list/test.txt",
}
# Category name -> list file; the names are the ones CULane results are reported under.
CATEGORY_FILES = {
    "normal": "list/test_split/test0_normal.txt",
    "crowd": "list/test_split/test1_crowd.txt",
    "hlight": "list/test_split/test2_hlight.txt",
    "shadow": "list/test_split/test3_shadow.txt",
    "noline": "list/test_split/test4_noline.txt",
    "arrow": "list/test_split/test5_arrow.txt",
    "curve": "list/test_split/test6_curve.txt",
    "cross": "list/test_split/test7_cross.txt",
    "night": "list/test_split/test8_night.txt",
}
# (width, height) of every CULane image (conf/dataset/culane.yaml: ori_w, ori_h).
IMAGE_SIZE = (1640, 590)
DOWNLOAD_HINT = "download CULane from https://xingangpan.github.io/projects/CULane.html"


def expected_layout() -> str:
    """What a CULane root should contain, for error messages."""
    return (
        "list/train_gt.txt, list/val.txt, list/test.txt, list/test_split/test0_normal.txt .. "
        "test8_night.txt and the driver_* image folders with <frame>.lines.txt labels"
    )


def split_names() -> list[str]:
    """Every split name ``read_culane_split`` accepts (category lists in canonical form)."""
    return list(LIST_FILES) + [f"test_split/{Path(p).stem}" for p in CATEGORY_FILES.values()]


def resolve_split(split: str) -> tuple[str, str | None]:
    """Map a split name to (list file relative to root, category or None).

    Category lists may be named ``test_split/test1_crowd``, ``test1_crowd`` or ``crowd``.
    """
    if split in LIST_FILES:
        return LIST_FILES[split], None
    name = split.removeprefix("test_split/").removesuffix(".txt")
    for category, list_file in CATEGORY_FILES.items():
        if name in (category, Path(list_file).stem):
            return list_file, category
    raise DatasetError(
        f"unknown CULane split {split!r}: expected one of {', '.join(split_names())} "
        "(or a category name such as 'crowd')"
    )


def parse_culane_list_line(text: str, where: str) -> tuple[str, tuple[int, ...] | None]:
    """One list line -> (image name without leading slash, lane-existence flags or None).

    train_gt.txt lines are ``/img.jpg /seg.png f1 f2 f3 f4``; other lists hold the path only.
    """
    fields = text.split()
    img_name = fields[0].lstrip("/") if fields else ""
    if not img_name:
        raise DatasetError(f"{where}: expected an image path such as /driver_.../00000.jpg")
    if len(fields) == 1:
        return img_name, None
    flags = fields[2:]
    if not all(flag in ("0", "1") for flag in flags):
        raise DatasetError(
            f"{where}: expected 'image segmentation_label flag...' with 0/1 lane-existence "
            f"flags, got {text.strip()!r}"
        )
    return img_name, tuple(int(flag) for flag in flags)


def parse_culane_label(
    text: str, label_path: str, image_size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """A ``.lines.txt`` file's text -> one float64 (N, 2) array per non-blank line, as written
    (points outside the image are kept; with ``image_size`` (width, height), points more than
    one image size outside it are an error). Errors name ``file:line``."""
    lanes = []
    for line_no, line in enumerate(split_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = np.array([float(field) for field in fields], dtype=np.float64)
        except ValueError:
            raise DatasetError(
                f"{label_path}:{line_no}: expected numbers 'x1 y1 x2 y2 ...', got {line.strip()!r}"
            ) from None
        if len(values) % 2:
            raise DatasetError(
                f"{label_path}:{line_no}: expected x y pairs, got an odd number of values "
                f"({len(values)})"
            )
        if not np.all(np.isfinite(values)):
            raise DatasetError(f"{label_path}:{line_no}: non-finite coordinate in {line.strip()!r}")
        if image_size is not None:
            where = f"{label_path}:{line_no}"
            check_culane_points(values, image_size[::-1], where, DatasetError)
        lanes.append(values.reshape(-1, 2))
    return lanes


def culane_train_lanes(lanes: list[np.ndarray]) -> list[np.ndarray]:
    """The lanes the reference trains on: points with a negative coordinate dropped, exact
    duplicate points dropped, lanes with fewer than 3 points dropped (the reference keeps
    ``len > 2``), points sorted top -> bottom."""
    kept = []
    for lane in lanes:
        points = lane[(lane[:, 0] >= 0) & (lane[:, 1] >= 0)]
        # Exact duplicates: unique over x + iy is much faster than unique(axis=0).
        _, first = np.unique(points[:, 0] + 1j * points[:, 1], return_index=True)
        points = points[np.sort(first)]
        if len(points) > 2:
            kept.append(points[np.argsort(points[:, 1], kind="stable")])
    return kept


def label_path_for(img_path: str) -> str:
    """``.../00000.jpg`` -> ``.../00000.lines.txt``."""
    return str(Path(img_path).with_suffix(".lines.txt"))


def read_culane_list(root: Path, list_file: str) -> list[tuple[str, str]]:
    """(image name, ``file:line``) per non-blank line of a list file under ``root``."""
    list_path = root / list_file
    if not list_path.is_file():
        raise DatasetError(
            f"CULane list file {list_path} {absent(list_path, missing='is missing')}: a CULane "
            "root contains "
            f"{expected_layout()} ({DOWNLOAD_HINT})"
        )
    entries = []
    for text, where in numbered_lines(list_path):
        img_name, _ = parse_culane_list_line(text, where)
        entries.append((img_name, where))
    return entries


def read_category_map(root: Path) -> dict[str, str]:
    """Image name -> test category, from the nine test_split lists (all required)."""
    categories: dict[str, str] = {}
    for category, list_file in CATEGORY_FILES.items():
        for img_name, _ in read_culane_list(root, list_file):
            categories[img_name] = category
    return categories


def read_label(
    label_path: str, where: str = "", image_size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """The lanes of a ``.lines.txt`` file (see ``parse_culane_label``); DatasetError when it
    is missing (naming the list line ``where`` that refers to it), unreadable, not UTF-8 or
    malformed (``file:line``)."""
    listed = f" (image listed at {where})" if where else ""
    missing = (
        f"label file {label_path} is missing{listed}; every CULane image has a "
        "<frame>.lines.txt next to it"
    )
    data = read_bytes(label_path, "label file", missing)
    return parse_culane_label(decode_text(data, label_path), label_path, image_size)


def load_lanes(label_path: str) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(lanes as written, training lanes) of a label file."""
    lanes = read_label(label_path)
    return tuple(lanes), tuple(culane_train_lanes(lanes))


def read_sample(
    root: Path,
    img_name: str,
    where: str,
    category: str | None,
    image_size: tuple[int, int] | None = None,
) -> LaneSample:
    """One CULane sample. Its label is parsed and checked here (so a bad label fails before
    training) but not kept: samples read it again when loaded, which keeps the 88,880-image
    training list small in every DataLoader worker."""
    img_path = str(root / img_name)
    label_path = label_path_for(img_path)
    read_label(label_path, where, image_size)
    return LaneSample(
        img_name=img_name,
        img_path=img_path,
        source=where,
        category=category,
        label_path=label_path,
        label_reader=load_lanes,
    )


def read_culane_split(
    root: str | Path, split: str, image_size: tuple[int, int] | None = None
) -> list[LaneSample]:
    """All samples of a CULane split. ``split``: train, val, test, or a category list
    (``test_split/test1_crowd``, ``test1_crowd`` or ``crowd``). Test samples carry their
    category (from the test_split lists, which the test split therefore requires).
    ``image_size`` (width, height): label points far outside it are refused."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(
            f"CULane root {root} {absent(root, 'directory')}: expected {expected_layout()} "
            f"({DOWNLOAD_HINT}) "
            "and set dataset.root"
        )
    list_file, category = resolve_split(split)
    entries = read_culane_list(root, list_file)
    if not entries:
        raise DatasetError(
            f"CULane list file {root / list_file} of split {split!r} is empty: expected one "
            "image path per line"
        )
    categories = read_category_map(root) if split == "test" else {}
    samples = [
        read_sample(root, img_name, where, category or categories.get(img_name), image_size)
        for img_name, where in entries
    ]
    warn_repeated_images(samples, f"CULane split {split!r} ({root})")
    return samples
