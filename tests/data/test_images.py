"""Prediction images: every unusable image is named, or skipped as a marked stand-in item."""

from __future__ import annotations

import re

import pytest
import torch

from src.data import DatasetError, collate_lanes
from src.data.images import ImageListDataset
from tests.data.lane_trees import lane_image, write_jpeg


@pytest.fixture()
def listing(tmp_path):
    write_jpeg(tmp_path / "imgs" / "a.jpg", lane_image(1280, 720, []))
    (tmp_path / "imgs" / "empty.jpg").write_bytes(b"")
    (tmp_path / "imgs" / "garbage.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    write_jpeg(tmp_path / "imgs" / "short.jpg", lane_image(320, 60, []))
    path = tmp_path / "list.txt"
    path.write_text("imgs/a.jpg\nimgs/empty.jpg\nimgs/garbage.jpg\nimgs/short.jpg\nimgs/gone.jpg\n")
    return path


def test_unusable_image_error_names_image_and_list_line(listing):
    (listing.parent / "list_ok.txt").write_text("imgs/a.jpg\nimgs/empty.jpg\n")
    dataset = ImageListDataset(listing.parent / "list_ok.txt", 320, 128, 80)
    assert dataset[0]["meta"]["skipped"] is None
    empty = listing.parent / "imgs" / "empty.jpg"
    expected = f"cannot decode image {empty}: the file is empty (0 bytes) (listed at "
    with pytest.raises(DatasetError, match=re.escape(expected)) as err:
        dataset[1]
    assert "list_ok.txt:2" in str(err.value)
    with pytest.raises(DatasetError, match=r"list.txt:5: image .*gone.jpg does not exist"):
        ImageListDataset(listing, 320, 128, 80)


def test_skip_unreadable_gives_marked_stand_in_items(listing):
    dataset = ImageListDataset(listing, 320, 128, 80, skip_unreadable=True)
    items = [dataset[(0, i)] for i in range(len(dataset))]
    metas = [item["meta"] for item in items]
    assert [m["skipped"] for m in metas] == [None] + [m["img_path"] for m in metas[1:]]
    assert metas[0]["skip_reason"] is None and metas[0]["ori_size"] == (720, 1280)
    reasons = [m["skip_reason"] for m in metas[1:]]
    assert "the file is empty (0 bytes)" in reasons[0] and "list.txt:2" in reasons[0]
    assert "not a valid image" in reasons[1] and "list.txt:3" in reasons[1]
    assert "60 rows, fewer than cut_height=80" in reasons[2] and "list.txt:4" in reasons[2]
    assert "gone.jpg: No such file" in reasons[3] and "list.txt:5" in reasons[3]
    assert [m["index"] for m in metas] == [0, 1, 2, 3, 4]
    assert all(m["ori_size"] == (80 + 128, 320) for m in metas[1:])  # decodable, not real
    batch = collate_lanes(items)  # stand-ins batch with real items; the caller drops them
    assert batch["img"].shape == (5, 3, 128, 320) and not batch["img"][1:].any()
    assert batch["img"].dtype == torch.float32


def test_folder_image_error_names_the_image(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "0.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=re.escape(f"cannot decode image {tmp_path}")):
        ImageListDataset(tmp_path / "imgs", 320, 128, 80)[0]
    meta = ImageListDataset(tmp_path / "imgs", 320, 128, 80, skip_unreadable=True)[0]["meta"]
    assert meta["skipped"] == str(tmp_path / "imgs" / "0.png")


def test_non_utf8_list_file_names_file_and_line(tmp_path):
    listing = tmp_path / "list.txt"
    write_jpeg(tmp_path / "a.jpg", lane_image(320, 180, []))
    listing.write_bytes(b"a.jpg\n\xff.jpg\n")
    with pytest.raises(DatasetError, match=re.escape(f"{listing}:2: expected UTF-8 text")):
        ImageListDataset(listing, 320, 128, 80)
