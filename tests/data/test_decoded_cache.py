"""The decoded cache (dataset.decoded_cache, src/data/decoded_cache.py): the same inputs as
decoding every time; rebuilt for a changed setting or image; a damaged entry or file decoded
again, never used; a disk too small refused before anything is written."""

from __future__ import annotations

import logging
import shutil
import zlib
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from src.data import DatasetError, build_dataset
from src.data.decoded_cache import CRC_ENTRY_DTYPE, DecodedCache
from tests.data.lane_trees import SRLANE_TARGETS, tusimple_config, write_tusimple_tree


@pytest.fixture()
def root(tmp_path):
    path = tmp_path / "tusimple"
    write_tusimple_tree(path, per_file=3, width=1280, height=720)
    return path


def _dataset(root: Path, cache: bool, training: bool = True, handover: str = "worker", **cfg):
    config = tusimple_config(root, cache_dir=str(root.parent / "cache"), decoded_cache=cache, **cfg)
    dataset = build_dataset(config, "train", training, 5, SRLANE_TARGETS)
    dataset.set_handover(handover)
    return dataset


def _cache_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root.parent / "cache" / "decoded").iterdir() if p.is_dir())


def _items_equal(a: dict, b: dict) -> bool:
    same = torch.equal(a["img"], b["img"]) and a["meta"]["augment"] == b["meta"]["augment"]
    if "gt_lane" in a:
        same = same and torch.equal(a["gt_lane"], b["gt_lane"])
    if "augment" in a:
        same = same and all(torch.equal(a["augment"][k], b["augment"][k]) for k in a["augment"])
    return same


@pytest.mark.parametrize(
    ("training", "handover"),
    [(True, "worker"), (True, "device"), (True, "float"), (False, "float")],
)
def test_cached_inputs_equal_decoded_inputs(root, training, handover):
    plain = _dataset(root, False, training, handover)
    cached = _dataset(root, True, training, handover)
    assert isinstance(cached.decoded, DecodedCache) and plain.decoded is None
    for key in [(0, i) for i in range(len(plain))] + [(3, 1), (7, 4)]:
        assert _items_equal(plain[key], cached[key]), key
    # Opened again: not rebuilt, still equal.
    again = _dataset(root, True, training, handover)
    assert again.decoded.directory == cached.decoded.directory
    assert _items_equal(plain[(2, 2)], again[(2, 2)])


def test_a_changed_crop_setting_builds_another_cache(root):
    first = _dataset(root, True)
    moved = _dataset(root, True, cut_height=200)
    assert len(_cache_dirs(root)) == 2
    assert first.decoded.directory != moved.decoded.directory
    plain = _dataset(root, False, cut_height=200)
    assert _items_equal(plain[(0, 3)], moved[(0, 3)])
    assert not torch.equal(first[(0, 3)]["img"], moved[(0, 3)]["img"])


def test_a_changed_image_file_is_decoded_again(root, caplog):
    _dataset(root, True)
    path = Path(_dataset(root, False).samples[2].img_path)
    shutil.copy(_dataset(root, False).samples[5].img_path, path)  # new content, new mtime
    with caplog.at_level(logging.INFO, logger="src.data.decoded_cache"):
        cached = _dataset(root, True)
    assert "1 changed image(s), decoding them again" in caplog.text
    plain = _dataset(root, False)
    assert _items_equal(plain[(0, 2)], cached[(0, 2)])


def test_a_damaged_entry_is_decoded_again_never_used(root, caplog):
    cached = _dataset(root, True)
    views = cached.decoded.directory / "views.u8"
    good = views.read_bytes()
    entry = cached.decoded.view_bytes
    damaged = bytearray(good)
    damaged[3 * entry + 1000 : 3 * entry + 5000] = bytes(4000)  # a zeroed stretch of entry 3
    views.write_bytes(bytes(damaged))
    reopened = _dataset(root, True)  # mtime of the image files unchanged: not rebuilt here
    with caplog.at_level(logging.WARNING, logger="src.data.decoded_cache"):
        item = reopened[(0, 3)]
    assert "is damaged (checksum mismatch)" in caplog.text
    assert _items_equal(_dataset(root, False)[(0, 3)], item)
    assert views.read_bytes() == good  # rewritten


def test_a_cache_checksummed_with_crc32_is_read_as_built(root, caplog):
    """Caches built before XXH3 hold CRC-32s: they are used, not rebuilt, and still checked."""
    cached = _dataset(root, True)
    directory = cached.decoded.directory
    entries = np.load(directory / "entries.npy")
    views = directory / "views.u8"
    stored = np.memmap(views, np.uint8, "r", shape=cached.decoded.shape)
    old = np.zeros(len(entries), dtype=CRC_ENTRY_DTYPE)
    for field in ("size", "mtime_ns", "state"):
        old[field] = entries[field]
    old["crc"] = [zlib.crc32(np.array(view)) for view in stored]
    del stored
    np.save(directory / "entries.npy", old)
    built = views.stat().st_mtime_ns
    reopened = _dataset(root, True)
    assert reopened.decoded.checksum_field == "crc" and views.stat().st_mtime_ns == built
    assert _items_equal(_dataset(root, False)[(0, 2)], reopened[(0, 2)])
    good = views.read_bytes()
    entry = reopened.decoded.view_bytes
    views.write_bytes(good[: 2 * entry] + bytes(entry) + good[3 * entry :])  # entry 2 zeroed
    with caplog.at_level(logging.WARNING, logger="src.data.decoded_cache"):
        item = _dataset(root, True)[(0, 2)]
    assert "is damaged (checksum mismatch)" in caplog.text
    assert _items_equal(_dataset(root, False)[(0, 2)], item)
    assert views.read_bytes() == good


def test_a_damaged_index_or_truncated_file_rebuilds_the_cache(root, caplog):
    cached = _dataset(root, True)
    directory = cached.decoded.directory
    (directory / "entries.npy").write_bytes(b"not numpy")
    with caplog.at_level(logging.WARNING, logger="src.data.decoded_cache"):
        rebuilt = _dataset(root, True)
    assert "is damaged" in caplog.text and rebuilt.decoded.directory == directory
    views = directory / "views.u8"
    views.write_bytes(views.read_bytes()[:-10])
    rebuilt = _dataset(root, True)
    assert views.stat().st_size == len(rebuilt) * rebuilt.decoded.view_bytes
    assert _items_equal(_dataset(root, False)[(1, 0)], rebuilt[(1, 0)])


def test_a_full_disk_is_refused_before_writing(root, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**6, 10**6))
    with pytest.raises(DatasetError, match=r"needs 0.0 GB at .*only 0.0 GB are free") as err:
        _dataset(root, True)
    assert "dataset.cache_dir" in str(err.value)
    assert _cache_dirs(root) == []


def test_unreadable_images_are_skipped_as_without_the_cache(root):
    victim = Path(_dataset(root, False).samples[1].img_path)
    victim.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match="not a valid image"):
        _dataset(root, True)[(0, 1)]
    plain = _dataset(root, False, skip_unreadable_images=True)
    cached = _dataset(root, True, skip_unreadable_images=True)
    a, b = plain[(0, 1)], cached[(0, 1)]
    assert a["meta"]["replaces"] == b["meta"]["replaces"] == [str(victim)]
    assert _items_equal(a, b)
    np.testing.assert_array_equal(a["gt_lane"], b["gt_lane"])
