"""Generation of the synthetic TuSimple-format dataset (the launcher's default dataset).

``generate_synthetic_tusimple(root, cfg)`` writes a real TuSimple tree that the TuSimple reader
reads unchanged: ``clips/<set>/<index>/20.jpg`` plus the label files under TuSimple's own names
(label_data_0313.json + label_data_0601.json = train, label_data_0531.json = val,
test_label.json = test) and ``synthetic_manifest.json``, which records the config and is
written last. Image ``i`` of label file ``k`` is drawn from ``default_rng([seed, k, i])``, so the
tree depends on the config only (not on the number of processes). A complete tree with the
same config is reused; a tree generated with another config is regenerated; a non-empty
directory without a manifest is never touched (error). Concurrent callers (DDP ranks) are
serialised by a file lock, and the tree is generated in a temporary sibling directory and
renamed into place, so a reader never sees a partial tree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .cache import cache_root
from .config import SyntheticConfig
from .errors import DatasetError
from .synthetic_scene import SceneTextures, render_scene

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2
MANIFEST = "synthetic_manifest.json"
JPEG_QUALITY = 90
SYNTHETIC_SPLITS = ("train", "val", "trainval", "test")
# Label file -> directory of its clips (the index of a file in this tuple seeds its images).
LABEL_FILES = (
    ("label_data_0313.json", "clips/0313"),
    ("label_data_0601.json", "clips/0601"),
    ("label_data_0531.json", "clips/0531"),
    ("test_label.json", "clips/test"),
)


def _config_dict(cfg: SyntheticConfig) -> dict:
    fields = ("num_train", "num_val", "num_test", "width", "height", "seed")
    return {name: int(getattr(cfg, name)) for name in fields}


def _validate(cfg: dict) -> None:
    problems = [f"{k} must be >= 1" for k in ("num_val", "num_test") if cfg[k] < 1]
    if cfg["num_train"] < 2:  # train is split over two label files, neither may be empty
        problems.append("num_train must be >= 2")
    if cfg["width"] < 64 or cfg["height"] < 64:
        problems.append("width and height must be >= 64")
    if cfg["seed"] < 0:
        problems.append("seed must be >= 0")
    if problems:
        raise DatasetError(f"invalid synthetic dataset config {cfg}: " + "; ".join(problems))


def file_counts(cfg: SyntheticConfig | dict) -> dict[str, int]:
    """Images per label file: train is split over 0313 (first half) and 0601."""
    c = cfg if isinstance(cfg, dict) else _config_dict(cfg)
    first = (c["num_train"] + 1) // 2
    counts = (first, c["num_train"] - first, c["num_val"], c["num_test"])
    return {name: n for (name, _), n in zip(LABEL_FILES, counts, strict=True)}


def default_synthetic_root(cfg: SyntheticConfig, cache_dir: str | None = None) -> Path:
    """``<cache>/synthetic/<hash of the config>``: one tree per config."""
    digest = hashlib.sha256(json.dumps(_config_dict(cfg), sort_keys=True).encode()).hexdigest()
    return cache_root(cache_dir) / "synthetic" / f"v{GENERATOR_VERSION}-{digest[:12]}"


def _manifest(cfg: dict) -> dict:
    return {
        "generator": "srlane-launcher synthetic TuSimple",
        "version": GENERATOR_VERSION,
        "config": cfg,
        "files": file_counts(cfg),
        "complete": True,
    }


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_TEXTURES: dict[tuple[int, int, int], SceneTextures] = {}


def _render_chunk(job: tuple[str, int, int, list[int], dict]) -> list[str]:
    """Render images ``indices`` of label file ``file_id`` into ``tmp_root``; returns their
    label lines."""
    tmp_root, file_id, _, indices, cfg = job
    cv2.setNumThreads(1)
    width, height, seed = cfg["width"], cfg["height"], cfg["seed"]
    key = (width, height, seed)
    if key not in _TEXTURES:
        _TEXTURES[key] = SceneTextures.create(width, height, seed)
    clip_dir = LABEL_FILES[file_id][1]
    lines = []
    for index in indices:
        scene = render_scene(
            np.random.default_rng([seed, file_id, index]), width, height, _TEXTURES[key]
        )
        raw_file = f"{clip_dir}/{index:06d}/20.jpg"
        path = Path(tmp_root) / raw_file
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buffer = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {path}")
        path.write_bytes(buffer.tobytes())
        lines.append(
            json.dumps(
                {"lanes": scene.lanes, "h_samples": scene.h_samples, "raw_file": raw_file},
                separators=(",", ":"),
            )
        )
    return lines


def _generate_into(tmp_root: Path, cfg: dict, workers: int) -> None:
    counts = file_counts(cfg)
    jobs = []
    for file_id, (name, _) in enumerate(LABEL_FILES):
        n = counts[name]
        for start in range(0, n, 50):
            jobs.append(
                (str(tmp_root), file_id, start, list(range(start, min(start + 50, n))), cfg)
            )
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_render_chunk, jobs))
    else:
        results = [_render_chunk(job) for job in jobs]
    by_file: dict[int, list[str]] = {i: [] for i in range(len(LABEL_FILES))}
    for job, lines in zip(jobs, results, strict=True):
        by_file[job[1]].extend(lines)
    for file_id, (name, _) in enumerate(LABEL_FILES):
        (tmp_root / name).write_text("".join(line + "\n" for line in by_file[file_id]))


def generate_synthetic_tusimple(
    root: str | Path, cfg: SyntheticConfig, workers: int | None = None
) -> Path:
    """Make sure ``root`` holds the synthetic TuSimple tree of ``cfg``; returns its absolute
    path. Generates it (in parallel over ``workers`` processes, default: all cores) when
    absent or generated from another config. See the module docstring."""
    config = _config_dict(cfg)
    _validate(config)
    workers = workers or min(os.cpu_count() or 1, 8)
    return generate_tree(
        root,
        _manifest(config),
        lambda tmp_root: _generate_into(tmp_root, config, workers),
        f"{sum(file_counts(config).values())} synthetic TuSimple images",
    )


def generate_tree(
    root: str | Path, wanted: dict, generate_into: Callable[[Path], None], what: str
) -> Path:
    """Make sure ``root`` holds the generated tree whose manifest is ``wanted``; returns its
    absolute path. Otherwise ``generate_into(tmp_root)`` writes it into a temporary sibling,
    the manifest is written last and the tree renamed into place, under a file lock (see the
    module docstring). ``what`` names the content in log messages."""
    root = Path(root).expanduser().absolute()
    manifest = _read_manifest(root)
    if manifest == wanted:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        manifest = _read_manifest(root)  # another process may have finished meanwhile
        if manifest == wanted:
            return root
        if root.exists() and manifest is None and any(root.iterdir()):
            raise DatasetError(
                f"synthetic dataset root {root} exists and is not empty, but has no "
                f"{MANIFEST}: it is not a generated dataset, so it is left alone. Point "
                "dataset.root at an empty or new directory"
            )
        if manifest is not None:
            log.info(
                "synthetic dataset at %s was generated with %s; regenerating for %s",
                root,
                manifest.get("config"),
                wanted.get("config"),
            )
        log.info("generating %s into %s", what, root)
        started = time.perf_counter()
        tmp_root = root.parent / f".{root.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp_root, ignore_errors=True)
        tmp_root.mkdir()
        try:
            generate_into(tmp_root)
            (tmp_root / MANIFEST).write_text(json.dumps(wanted, indent=1))
            if root.exists():
                stale = root.parent / f".{root.name}.old-{os.getpid()}"
                os.replace(root, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp_root, root)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)
        log.info("generated %s in %.1f s", what, time.perf_counter() - started)
    return root
