"""LLAMAS reader: marker labels -> LaneSample records with the official four-lane ground truth.

Layout (karstenBehrendt/unsupervised_llamas): ``labels/<split>/<recording>/<name>.json`` and
``color_images/<split>/<recording>/<name>_color_rect.png`` for train and valid; the test split
has images only (its labels are on the benchmark server): its samples have no lanes, for
writing predictions. Images are 1276x717.

Each label gives (``src.metrics.llamas_labels``, the official spline_creator logic):
``lanes``, the benchmark ground truth (l1, l0, r0, r1; points of rows 300..716), which the LLAMAS
metric draws as they are, and ``train_lanes``, the lanes CLRNet trains on (every row with a
point). Labels are parsed when the split is read (a bad label fails before training, naming
``file:line``; large splits in parallel processes) and read again when a sample is loaded, which
keeps the samples small.
Unlike CLRNet's reader, nothing is written into the dataset tree.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from src.metrics.files import FileFormatError
from src.metrics.files_llamas import LLAMAS_DOWNLOAD_HINT
from src.metrics.llamas_labels import IMAGE_HEIGHT, IMAGE_WIDTH, LlamasLanes, read_llamas_label

from .errors import DatasetError
from .samples import LaneSample

# (width, height) of every LLAMAS image (ori_w, ori_h of a LLAMAS dataset config).
IMAGE_SIZE = (IMAGE_WIDTH, IMAGE_HEIGHT)
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
IMAGE_SUFFIX = "_color_rect.png"
DOWNLOAD_HINT = LLAMAS_DOWNLOAD_HINT
PARALLEL_FROM = 2000  # labels: below this, reading them in this process is quicker


def expected_layout() -> str:
    """What a LLAMAS root should contain, for error messages."""
    return (
        "labels/{train,valid}/<recording>/<name>.json and "
        "color_images/{train,valid,test}/<recording>/<name>_color_rect.png"
    )


def split_folder(split: str) -> str:
    """The folder of a split (``val`` -> ``valid``); DatasetError for an unknown name."""
    if split not in SPLIT_FOLDERS:
        raise DatasetError(
            f"unknown LLAMAS split {split!r}: expected one of {', '.join(SPLIT_FOLDERS)}"
        )
    return SPLIT_FOLDERS[split]


def read_label(label_path: str) -> LlamasLanes:
    """The lanes of one label; DatasetError naming ``file:line`` for a bad label."""
    try:
        return read_llamas_label(label_path)
    except FileFormatError as err:
        raise DatasetError(str(err)) from None
    except OSError as err:
        raise DatasetError(f"cannot read label file {label_path}: {err.strerror or err}") from None


def load_lanes(label_path: str) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(benchmark ground truth, training lanes) of a label file."""
    lanes = read_label(label_path)
    return lanes.lanes, lanes.train_lanes


def _check_label(label_path: Path) -> None:
    read_label(str(label_path))


def check_labels(label_paths: list[Path], workers: int | None = None) -> None:
    """Read every label (DatasetError at the first bad one, in path order). A label takes
    ~1.5 ms (the official row recurrence is sequential), so large splits are read by a pool
    of processes: the 58,269 training labels would take about 90 s on one core."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(label_paths) > PARALLEL_FROM:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_check_label, label_paths, chunksize=256):
                pass
        return
    for label_path in label_paths:
        _check_label(label_path)


def image_name_for(root: Path, label_path: Path) -> str:
    """``labels/valid/<rec>/<name>.json`` -> ``color_images/valid/<rec>/<name>_color_rect.png``."""
    rel = label_path.relative_to(root / "labels")
    return f"color_images/{rel.parent.as_posix()}/{rel.name.removesuffix('.json')}{IMAGE_SUFFIX}"


def files_under(folder: Path, suffix: str = ".json") -> list[Path]:
    """Every file under ``folder`` whose name ends with ``suffix``, sorted."""
    return sorted(
        Path(top) / name
        for top, _, names in os.walk(folder)
        for name in names
        if name.endswith(suffix)
    )


def _unlabelled_samples(root: Path, folder: str) -> list[LaneSample]:
    images = files_under(root / "color_images" / folder, IMAGE_SUFFIX)
    return [
        LaneSample(
            img_name=path.relative_to(root).as_posix(),
            img_path=str(path),
            source=str(path),
            ori_size=(IMAGE_HEIGHT, IMAGE_WIDTH),
        )
        for path in images
    ]


def read_llamas_split(root: str | Path, split: str) -> list[LaneSample]:
    """All samples of a LLAMAS split (train, valid / val, test) under ``root``, sorted by path."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(
            f"LLAMAS root {root} does not exist: expected {expected_layout()} "
            f"({DOWNLOAD_HINT}) and set dataset.root"
        )
    folder = split_folder(split)
    if folder == "test":
        samples = _unlabelled_samples(root, folder)
        where = root / "color_images" / folder
    else:
        where = root / "labels" / folder
        samples = []
        label_paths = files_under(where)
        check_labels(label_paths)
        for label_path in label_paths:
            samples.append(
                LaneSample(
                    img_name=image_name_for(root, label_path),
                    img_path=str(root / image_name_for(root, label_path)),
                    source=str(label_path),
                    label_path=str(label_path),
                    label_reader=load_lanes,
                    ori_size=(IMAGE_HEIGHT, IMAGE_WIDTH),
                )
            )
    if not samples:
        raise DatasetError(
            f"LLAMAS split {split!r} has no samples under {where}: expected "
            f"{expected_layout()} ({DOWNLOAD_HINT})"
        )
    return samples
