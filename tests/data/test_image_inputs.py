"""Image inputs: a JPEG whose tail is missing is never used partly (read_image refuses it,
named; mode=predict / the datasets with skip_unreadable_images skip it with that reason); a
prediction folder entry or list line that is a directory, and an image listed twice.

OpenCV 4.x (this project accepts >= 4.8) decodes truncated JPEG data partly, the missing rows
grey, without an error: measured with opencv-python-headless 4.10.0.84, 50 of 50 truncation
points of a 76 kB synthetic frame decoded. OpenCV 5.1 (this machine) returns None for them. The
tests that need the partial decoding give ``cv2.imdecode`` that behaviour."""

from __future__ import annotations

import logging
import struct

import cv2
import numpy as np
import pytest

import src.data.pipeline
from src.data import DatasetError
from src.data.images import ImageListDataset
from src.data.pipeline import ImageReadError, jpeg_is_truncated, read_image
from tests.data.lane_trees import lane_image


def _jpeg(width: int = 640, height: int = 360) -> bytes:
    ok, buffer = cv2.imencode(".jpg", lane_image(width, height, []))
    assert ok
    return buffer.tobytes()


def _with_exif_thumbnail(jpeg: bytes) -> bytes:
    """``jpeg`` with a small JPEG inside an APP1 segment after its start marker, as cameras
    store EXIF thumbnails (its own scan and end marker come before the main image's)."""
    thumbnail = _jpeg(64, 36)
    payload = b"Exif\x00\x00" + thumbnail
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


@pytest.fixture
def opencv4_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """cv2.imdecode as OpenCV 4.x behaves on a truncated JPEG: an image, the lost rows grey."""
    decode = cv2.imdecode

    def partly(buffer: np.ndarray, flags: int) -> np.ndarray | None:
        image = decode(buffer, flags)
        if image is None and bytes(buffer[:3]) == b"\xff\xd8\xff":
            return np.full((360, 640, 3), 128, dtype=np.uint8)
        return image

    monkeypatch.setattr(src.data.pipeline.cv2, "imdecode", partly)


def test_the_end_marker_check() -> None:
    whole = _jpeg()
    assert not jpeg_is_truncated(whole)
    assert not jpeg_is_truncated(whole + b"\x00" * 100)  # bytes after the end marker
    assert all(jpeg_is_truncated(whole[:n]) for n in (len(whole) - 2, len(whole) // 2, 700))
    camera = _with_exif_thumbnail(whole)
    assert cv2.imdecode(np.frombuffer(camera, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
    assert not jpeg_is_truncated(camera)
    # the thumbnail's end marker is no longer the last marker's excuse
    assert jpeg_is_truncated(camera[: len(camera) - 1000])
    assert not jpeg_is_truncated(b"\x89PNG\r\n\x1a\n")  # not a JPEG: OpenCV decides


@pytest.mark.usefixtures("opencv4_decoding")
def test_a_truncated_jpeg_is_refused_even_where_opencv_decodes_it_partly(tmp_path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg()[: len(_jpeg()) // 2])
    # before: a (360, 640, 3) image with grey rows
    with pytest.raises(ImageReadError, match="a truncated JPEG") as info:
        read_image(str(path))
    assert str(path) in str(info.value)


@pytest.mark.usefixtures("opencv4_decoding")
def test_predict_with_skip_unreadable_names_and_skips_a_truncated_jpeg(tmp_path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "0.jpg").write_bytes(_jpeg())
    (folder / "1.jpg").write_bytes(_jpeg()[: len(_jpeg()) // 2])
    dataset = ImageListDataset(folder, 320, 128, 80, skip_unreadable=True)
    metas = [dataset[i]["meta"] for i in range(2)]
    assert metas[0]["skipped"] is None
    # before: a prediction for the grey-filled image, and nothing named
    assert metas[1]["skipped"] == str(folder / "1.jpg")
    assert "a truncated JPEG" in metas[1]["skip_reason"]


def test_this_opencv_refuses_a_truncated_jpeg_too(tmp_path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg()[: len(_jpeg()) // 2])
    with pytest.raises(ImageReadError, match=str(path)):
        read_image(str(path))


def test_predict_inputs_that_are_directories_or_repeated(tmp_path, caplog) -> None:
    folder = tmp_path / "imgs"
    (folder / "frames.jpg").mkdir(parents=True)  # a folder with an image's name
    (folder / "0.jpg").write_bytes(_jpeg())
    # before: the folder was listed as an image and failed when loaded
    assert [name for _, name, _ in ImageListDataset(folder, 320, 128, 80).entries] == ["0.jpg"]
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/frames.jpg\n")
    with pytest.raises(DatasetError, match=r"list.txt:1: image .*frames.jpg is a directory"):
        ImageListDataset(listing, 320, 128, 80)
    listing.write_text("imgs/0.jpg\nimgs/0.jpg\n")
    with caplog.at_level(logging.WARNING):
        assert len(ImageListDataset(listing, 320, 128, 80)) == 2
    assert (
        "1 image(s) listed more than once" in caplog.text and "list.txt:2 (first at" in caplog.text
    )
