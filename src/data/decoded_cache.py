"""Decode once (``dataset.decoded_cache=true``): an on-disk, memory-mapped cache of every
image's network view (cropped at cut_height, resized to img_w x img_h, RGB uint8), so that
epochs after the first skip JPEG decoding and resizing. Resizing is the first step of the
pipeline, so training from the cache gives the same inputs as decoding (tests/data/
test_decoded_cache.py shows it).

Layout, under ``<cache root>/decoded/<key>/`` (cache root: src/data/cache.py):

- ``views.u8``: the views, N x img_h x img_w x 3 bytes, read through a memory map;
- ``entries.npy``: per image its source file's size and mtime, the checksum of its view (XXH3
  64-bit; CRC-32 in caches built before XXH3, which are read as they are) and its state (empty,
  ok, unreadable: the decoder's message is in ``unreadable.json``).

The key is a hash of the crop / resize settings and the list of image paths: a changed setting
or split is another cache. A changed image file (size or mtime) is found when the dataset is
built and its entry rebuilt; a view whose checksum does not match is found when it is read and
decoded again from its file (and rewritten), never trained on. XXH3 rather than zlib's CRC-32: a
worker checks every view it reads, and XXH3 does it in about a tenth of the time (0.01 vs 0.13 ms
per 800x320 view on one core), the largest share of a cached sample's cost after its targets.
The first build runs in threads (OpenCV releases the GIL) with a progress bar, into a temporary
directory renamed into place when complete; its size is checked against the free disk space
before it starts, and the space is reserved. A lock file lets concurrent processes (DDP ranks,
two runs) wait for one builder.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress
from xxhash import xxh3_64_intdigest

from .errors import DatasetError
from .pipeline import ImageReadError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EMPTY, OK, UNREADABLE = 0, 1, 2
ENTRY_DTYPE = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("xxh3", "<u8"), ("state", "u1")])
# Caches built before XXH3 checksummed their views with CRC-32; they are read and kept as built.
CRC_ENTRY_DTYPE = np.dtype([("size", "<i8"), ("mtime_ns", "<i8"), ("crc", "<u4"), ("state", "u1")])
# The checksum of a view by the entries field that holds it.
CHECKSUMS: dict[str, Callable[[np.ndarray], int]] = {"xxh3": xxh3_64_intdigest, "crc": zlib.crc32}
# Left free on the disk after the cache is allocated.
DISK_MARGIN_BYTES = 1 << 30

# Decodes image i of the list to its network view (RGB uint8 img_h x img_w x 3); ImageReadError
# when it cannot be decoded, DatasetError when it cannot be used at all (e.g. a wrong size).
ViewReader = Callable[[int], np.ndarray]


def cache_key(paths: Sequence[str], settings: dict) -> str:
    """Hash of the settings that shape a view and of the image list."""
    digest = hashlib.sha256(json.dumps({"version": FORMAT_VERSION, **settings}).encode())
    for path in paths:
        digest.update(path.encode() + b"\0")
    return digest.hexdigest()[:24]


def _checksum_field(entries: np.ndarray) -> str:
    """The entries field that holds the views' checksums ("xxh3", or "crc" in older caches)."""
    return "xxh3" if entries.dtype == ENTRY_DTYPE else "crc"


def _fingerprint(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


class DecodedCache:
    """The views of one image list; ``view(i)`` is image i's checked view."""

    def __init__(
        self, directory: Path, paths: Sequence[str], shape: tuple[int, int], read: ViewReader
    ) -> None:
        self.directory = directory
        self.paths = list(paths)
        self.shape = (len(self.paths), shape[0], shape[1], 3)
        self.read = read
        self.entries = np.load(directory / "entries.npy")
        self.checksum_field = _checksum_field(self.entries)
        self.unreadable = _load_unreadable(directory)
        self._views: np.memmap | None = None  # opened per process (workers fork)

    @property
    def view_bytes(self) -> int:
        return int(np.prod(self.shape[1:]))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_views"] = None
        return state

    def view(self, index: int) -> np.ndarray:
        """Image ``index``'s view (a copy); ImageReadError for an image that did not decode. A
        view whose checksum does not match its entry is decoded again and rewritten."""
        entry = self.entries[index]
        if entry["state"] == UNREADABLE:
            raise ImageReadError(
                self.unreadable.get(str(index), f"cannot decode {self.paths[index]}")
            )
        if self._views is None:
            self._views = np.memmap(self.directory / "views.u8", np.uint8, "r", shape=self.shape)
        view = np.array(self._views[index])
        field = self.checksum_field
        if entry["state"] == OK and CHECKSUMS[field](view) == int(entry[field]):
            return view
        log.warning(
            "decoded cache %s: the view of %s is damaged (checksum mismatch); decoded again and "
            "rewritten",
            self.directory,
            self.paths[index],
        )
        view = self.read(index)
        self._rewrite(index, view)
        return view

    def _rewrite(self, index: int, view: np.ndarray) -> None:
        try:
            fd = os.open(self.directory / "views.u8", os.O_WRONLY)
        except OSError as err:  # a read-only cache: train on the fresh decode anyway
            log.warning("cannot rewrite %s: %s", self.directory / "views.u8", err)
            return
        try:
            os.pwrite(fd, np.ascontiguousarray(view).data, index * self.view_bytes)
        finally:
            os.close(fd)


def open_decoded_cache(
    cache_dir: Path,
    paths: Sequence[str],
    shape: tuple[int, int],
    settings: dict,
    read: ViewReader,
    threads: int | None = None,
) -> DecodedCache:
    """The cache of ``paths``' views (shape = (img_h, img_w)) under ``cache_dir``, built or
    brought up to date first (a changed or unfinished entry is decoded again)."""
    root = Path(cache_dir) / "decoded"
    root.mkdir(parents=True, exist_ok=True)
    directory = root / cache_key(paths, settings)
    threads = threads or len(os.sched_getaffinity(0))
    with _locked(root / f"{directory.name}.lock"):
        if not _complete(directory, len(paths), shape):
            _build(directory, paths, shape, settings, read, threads)
        else:
            _refresh(directory, paths, shape, read, threads)
    return DecodedCache(directory, paths, shape, read)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _complete(directory: Path, count: int, shape: tuple[int, int]) -> bool:
    """Whether ``directory`` holds a whole cache (else it is built again from scratch)."""
    try:
        entries = np.load(directory / "entries.npy")
        size = (directory / "views.u8").stat().st_size
    except (OSError, ValueError) as err:
        if directory.exists():
            log.warning("decoded cache %s is damaged (%s): building it again", directory, err)
        return False
    whole = entries.dtype in (ENTRY_DTYPE, CRC_ENTRY_DTYPE) and entries.shape == (count,)
    if whole and size == count * shape[0] * shape[1] * 3:
        return True
    log.warning("decoded cache %s is damaged (wrong sizes): building it again", directory)
    return False


def _build(
    directory: Path,
    paths: Sequence[str],
    shape: tuple[int, int],
    settings: dict,
    read: ViewReader,
    threads: int,
) -> None:
    """Build the whole cache in a temporary directory, then rename it into place."""
    size = len(paths) * shape[0] * shape[1] * 3
    free = shutil.disk_usage(directory.parent).free
    if size + DISK_MARGIN_BYTES > free:
        raise DatasetError(
            f"the decoded cache of {len(paths)} images needs {size / 1e9:.1f} GB at "
            f"{directory.parent}, but only {free / 1e9:.1f} GB are free (and "
            f"{DISK_MARGIN_BYTES / 1e9:.1f} GB are kept free): set dataset.cache_dir to a larger "
            "disk, or dataset.decoded_cache=false"
        )
    # Under the lock no other builder of this key runs: what is there is left by a killed one.
    for leftover in [directory, *directory.parent.glob(f"{directory.name}.tmp-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    temporary = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    temporary.mkdir()
    try:
        with open(temporary / "views.u8", "wb") as handle:
            os.posix_fallocate(handle.fileno(), 0, size)  # reserved: no ENOSPC mid-build
        (temporary / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        entries = np.zeros(len(paths), dtype=ENTRY_DTYPE)
        log.info(
            "decoded cache: decoding %d images (%.1f GB) into %s with %d threads",
            len(paths),
            size / 1e9,
            directory,
            threads,
        )
        start = time.perf_counter()
        _fill(temporary, paths, shape, range(len(paths)), entries, read, threads)
        os.rename(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    log.info("decoded cache: built in %.0f s", time.perf_counter() - start)


def _refresh(
    directory: Path, paths: Sequence[str], shape: tuple[int, int], read: ViewReader, threads: int
) -> None:
    """Decode again the entries whose image file changed, or that never finished."""
    entries = np.load(directory / "entries.npy")
    stale = []
    for index, path in enumerate(paths):
        try:
            size, mtime = _fingerprint(path)
        except OSError:
            size, mtime = -1, -1  # gone since: decoding it records it as unreadable
        entry = entries[index]
        if entry["state"] == EMPTY or (entry["size"], entry["mtime_ns"]) != (size, mtime):
            stale.append(index)
    if stale:
        log.info(
            "decoded cache %s: %d changed image(s), decoding them again", directory, len(stale)
        )
        _fill(directory, paths, shape, stale, entries, read, threads)


def _fill(
    directory: Path,
    paths: Sequence[str],
    shape: tuple[int, int],
    indices: Sequence[int],
    entries: np.ndarray,
    read: ViewReader,
    threads: int,
) -> None:
    """Decode ``indices`` into views.u8 and record them in entries.npy (written atomically)."""
    views = np.memmap(directory / "views.u8", np.uint8, "r+", shape=(len(paths), *shape, 3))
    unreadable = _load_unreadable(directory)
    checksum = CHECKSUMS[_checksum_field(entries)]

    def decode(index: int) -> None:
        path = paths[index]
        entries["state"][index] = EMPTY
        try:
            size, mtime = _fingerprint(path)
        except OSError as err:
            size, mtime = -1, -1
            unreadable[str(index)] = f"cannot read image {path}: {err.strerror or err}"
            entries[index] = (size, mtime, 0, UNREADABLE)
            return
        try:
            view = read(index)
        except ImageReadError as err:  # kept, with its message: the dataset skips or raises
            unreadable[str(index)] = str(err)
            entries[index] = (size, mtime, 0, UNREADABLE)
            return
        views[index] = view
        unreadable.pop(str(index), None)
        entries[index] = (size, mtime, checksum(view), OK)

    threads_before = cv2.getNumThreads()
    # One OpenCV thread per call: its own thread pool, started in this process, can deadlock
    # the DataLoader workers forked later (see src/main.py's int8_calibration).
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(threads) as pool, Progress(transient=True) as bar:
            task = bar.add_task("decoding images once", total=len(indices))
            for _ in pool.map(decode, indices):
                bar.advance(task)
    finally:
        cv2.setNumThreads(threads_before)
        views.flush()
        _save(directory, entries, unreadable)


def _save(directory: Path, entries: np.ndarray, unreadable: dict[str, str]) -> None:
    for name, write in (
        ("unreadable.json", lambda f: f.write(json.dumps(unreadable).encode())),
        ("entries.npy", lambda f: np.save(f, entries)),
    ):
        temporary = directory / f"{name}.tmp-{os.getpid()}"
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, directory / name)


def _load_unreadable(directory: Path) -> dict[str, str]:
    try:
        return json.loads((directory / "unreadable.json").read_text())
    except (OSError, ValueError):
        return {}
