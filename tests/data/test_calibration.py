"""int8 calibration sets (src/data/calibration.py): images or video frames spread over the whole
source, preprocessed as prediction preprocesses them; a bad source is named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from src.data import DatasetError
from src.data.calibration import calibration_images, spread
from src.data.images import ImageListDataset
from src.data.video import video_writer

WIDTH, HEIGHT, CUT = 320, 180, 20


def gray_frame(level: int) -> np.ndarray:
    """A uniform frame whose grey level identifies it (mp4v keeps a flat frame's level to ~1)."""
    return np.full((HEIGHT, WIDTH, 3), level, dtype=np.uint8)


def write_video(path: Path, levels: list[int]) -> Path:
    writer = video_writer(path, 10.0, WIDTH, HEIGHT)
    for level in levels:
        writer.write(gray_frame(level))
    writer.release()
    return path


def test_spread_covers_the_whole_source() -> None:
    assert spread(30, 4) == [0, 10, 19, 29]
    assert spread(3, 64) == [0, 1, 2]  # fewer than asked: each once
    assert spread(5, 1) == [0]


def test_calibration_from_a_folder_of_images(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(10):
        cv2.imwrite(str(folder / f"{index:02d}.png"), gray_frame(20 * index))
    images, described = calibration_images(folder, 4, 160, 64, CUT)
    assert described == f"4 of the 10 images of {folder}"
    assert len(images) == 4
    # Spread over the folder (sorted names), each item exactly as prediction reads that image.
    predicted = ImageListDataset(folder, 160, 64, CUT)
    for item, index in zip(images, [0, 3, 6, 9], strict=True):
        assert item["meta"]["img_name"] == f"{index:02d}.png"
        assert torch.equal(item["img"], predicted[index]["img"])
    # A text file of image paths is a source too.
    listing = tmp_path / "list.txt"
    listing.write_text("frames/01.png\nframes/02.png\n")
    images, described = calibration_images(listing, 64, 160, 64, CUT)
    assert described == f"2 of the 2 images of {listing}"


def test_calibration_from_a_video_seeks_frames_spread_over_it(tmp_path: Path) -> None:
    levels = [8 * index for index in range(30)]
    video = write_video(tmp_path / "drive.mp4", levels)
    frames, described = calibration_images(video, 4, 160, 64, CUT)
    assert described == f"4 of the 30 frames of {video}"
    assert [frames[i]["meta"]["frame"] for i in range(4)] == [0, 10, 19, 29]
    for i, index in enumerate([0, 10, 19, 29]):
        item = frames[i]
        assert item["img"].shape == (3, 64, 160) and item["img"].dtype == torch.float32
        assert item["meta"]["ori_size"] == (HEIGHT, WIDTH)
        # The frame sought is the frame read (its grey level), not a neighbour 8 levels away.
        assert abs(float(item["img"].mean()) * 255 - levels[index]) < 3


def test_calibration_from_a_folder_of_videos_spreads_over_all_of_them(tmp_path: Path) -> None:
    write_video(tmp_path / "videos" / "a.mp4", [10] * 6)
    write_video(tmp_path / "videos" / "b" / "b.mp4", [200] * 4)
    frames, described = calibration_images(tmp_path / "videos", 3, 160, 64, CUT)
    assert described == f"3 of the 10 frames of 2 videos under {tmp_path / 'videos'}"
    where = [(Path(frames[i]["meta"]["video"]).name, frames[i]["meta"]["frame"]) for i in range(3)]
    assert where == [("a.mp4", 0), ("a.mp4", 4), ("b.mp4", 3)]  # positions 0, 4 and 9 of 10


def test_a_missing_or_empty_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"int8 calibration images: .*gone does not exist"):
        calibration_images(tmp_path / "gone", 8, 160, 64, CUT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"int8 calibration images: no images .* under"):
        calibration_images(tmp_path / "empty", 8, 160, 64, CUT)
    write_video(tmp_path / "short.mp4", [10] * 3)
    with pytest.raises(DatasetError, match=r"more than cut_height=500 rows"):
        calibration_images(tmp_path / "short.mp4", 8, 160, 64, 500)
