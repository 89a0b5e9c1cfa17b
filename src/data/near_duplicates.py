"""The reference's near-duplicate-frame filter for CULane lists, with an on-disk cache.

The reference drops a list entry when the mean absolute pixel difference to the previous entry
of the list (whether or not that one was kept) is below 15; the first entry is compared with
an all-zero image, so a very dark first frame is dropped too. That means decoding every image
once, so the result is cached under ``cache_dir``, keyed by the dataset root, the split, the
threshold and the list file's contents (a changed list recomputes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from src.run_dir import write_atomic

from .cache import cache_root
from .errors import DatasetError
from .pipeline import ImageReadError, read_image
from .samples import LaneSample

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 15.0
CACHE_VERSION = 1


def mean_abs_difference(image: np.ndarray, previous: np.ndarray | None) -> float:
    """Mean absolute difference per pixel and channel; ``previous`` None = an all-zero image.
    Images of different shapes count as different (infinite difference)."""
    if previous is None:
        return float(cv2.norm(image, cv2.NORM_L1)) / image.size
    if previous.shape != image.shape:
        return float("inf")
    return float(cv2.norm(image, previous, cv2.NORM_L1)) / image.size


def _chunk_differences(paths: Sequence[str], previous_path: str | None) -> list[float]:
    cv2.setNumThreads(1)
    previous = read_image(previous_path) if previous_path is not None else None
    out = []
    for path in paths:
        image = read_image(path)
        out.append(mean_abs_difference(image, previous))
        previous = image
    return out


def frame_differences(paths: Sequence[str], workers: int | None = None) -> np.ndarray:
    """Difference of each image to the previous one in ``paths`` (the first to black), read in
    parallel chunks. ImageReadError names an unreadable image."""
    workers = max(1, min(workers or os.cpu_count() or 1, 16))
    if len(paths) < 64 or workers == 1:
        return np.array(_chunk_differences(paths, None))
    bounds = np.linspace(0, len(paths), min(workers * 8, len(paths)) + 1).astype(int)
    jobs = [
        (list(paths[a:b]), paths[a - 1] if a > 0 else None)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(_chunk_differences, *zip(*jobs, strict=True))
        return np.concatenate([np.asarray(part) for part in parts])


def _cache_key(root: Path, split: str, list_path: Path, threshold: float) -> str:
    digest = hashlib.sha256()
    digest.update(f"v{CACHE_VERSION}\0{root}\0{split}\0{threshold!r}\0".encode())
    digest.update(list_path.read_bytes())
    return digest.hexdigest()[:32]


def filter_near_duplicates(
    samples: list[LaneSample],
    root: Path,
    split: str,
    list_path: Path,
    cache_dir: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int | None = None,
) -> list[LaneSample]:
    """Drop near-duplicate consecutive frames of a list (see module docstring); cached."""
    key = _cache_key(root, split, list_path, threshold)
    cache_path = cache_root(cache_dir) / "culane-near-duplicates" / f"{key}.json"
    keep: list[int] | None = None
    if cache_path.is_file():
        try:
            cached = json.loads(cache_path.read_text())
            if cached.get("count") == len(samples):
                keep = [int(i) for i in cached["keep"]]
        except (OSError, ValueError, KeyError, TypeError):
            keep = None  # unreadable cache: recompute
    if keep is None:
        log.info(
            "near-duplicate filter: reading %d images of %s (cached afterwards)",
            len(samples),
            list_path,
        )
        try:
            diffs = frame_differences([s.img_path for s in samples], workers)
        except ImageReadError as err:
            raise DatasetError(f"near-duplicate filter: {err}") from None
        keep = [int(i) for i in np.flatnonzero(diffs >= threshold)]
        payload = {
            "root": str(root),
            "split": split,
            "threshold": threshold,
            "count": len(samples),
            "keep": keep,
        }
        write_atomic(cache_path, json.dumps(payload))
    log.info("near-duplicate filter kept %d of %d frames of %s", len(keep), len(samples), split)
    return [samples[i] for i in keep]
