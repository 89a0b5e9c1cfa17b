"""The images an int8 model is calibrated on (``evaluation.int8_calibration``, src/quantize.py):
a sample spread evenly over a folder of images, a text file of image paths, a video or a folder
of videos, each image preprocessed exactly as prediction preprocesses it (crop at cut_height,
resize). The training split is the other choice; src/main.py ``int8_calibration_set`` picks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .errors import DatasetError
from .images import ImageListDataset
from .pipeline import crop_and_resize, input_array
from .video import VideoFrames, list_videos


def spread(total: int, count: int) -> list[int]:
    """``min(count, total)`` indices spread evenly over ``range(total)``, first and last
    included: a calibration set that covers a whole folder or video, not its start."""
    count = min(count, total)
    if count <= 0:
        return []
    return torch.linspace(0, total - 1, count).round().long().tolist()


class VideoFrameSample(Dataset):
    """``count`` frames spread evenly over the frames of ``videos`` (taken together, in order),
    each cropped at ``cut_height`` and resized to img_w x img_h. Items: "img" float32
    (3, img_h, img_w) RGB in [0, 1] and "meta" (video, frame, ori_size, cut_height, skipped
    None), like ImageListDataset's. Frames are found by seeking, so a long video is not decoded
    from its start; a video whose container does not state its frame count is skipped, as is
    one with no more rows than ``cut_height`` (DatasetError when none is left)."""

    def __init__(
        self, videos: list[Path], count: int, img_w: int, img_h: int, cut_height: int
    ) -> None:
        lengths = []
        for path in videos:
            video = VideoFrames(path)  # opened only for its stated size and frame count
            video.capture.release()
            if video.frame_count > 0 and video.height > cut_height:
                lengths.append((path, video.frame_count))
        self.total = sum(length for _, length in lengths)
        if not self.total:
            raise DatasetError(
                f"no frames to calibrate on in {', '.join(map(str, videos))}: each video needs a "
                f"stated frame count and more than cut_height={cut_height} rows"
            )
        self.frames: list[tuple[Path, int]] = []  # (video, frame index) of each item
        for position in spread(self.total, count):
            for path, length in lengths:
                if position < length:
                    self.frames.append((path, position))
                    break
                position -= length
        self.img_w, self.img_h, self.cut_height = int(img_w), int(img_h), int(cut_height)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        path, frame_index = self.frames[int(index)]
        capture = cv2.VideoCapture(str(path))
        try:
            capture.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
            ok, frame = capture.read()
        finally:
            capture.release()
        if not ok:
            raise DatasetError(f"{path}: frame {frame_index} cannot be read")
        img = input_array(crop_and_resize(frame, self.cut_height, self.img_w, self.img_h))
        meta = {
            "video": str(path),
            "frame": frame_index,
            "ori_size": (int(frame.shape[0]), int(frame.shape[1])),
            "cut_height": self.cut_height,
            "skipped": None,
        }
        return {"img": torch.from_numpy(np.ascontiguousarray(img)), "meta": meta}


def calibration_images(
    source: str | Path,
    count: int,
    img_w: int,
    img_h: int,
    cut_height: int,
    skip_unreadable: bool = False,
) -> tuple[Dataset, str]:
    """``count`` images spread over ``source`` (a video, a folder of videos, a folder of images
    or a text file of image paths) and a description of them for the log. DatasetError names
    the source when it is missing or holds nothing usable."""
    if count < 1:
        raise ValueError(f"int8 calibration needs at least 1 image, got {count}")
    path = Path(source).expanduser().absolute()
    videos = list_videos(path)
    if videos:
        sample = VideoFrameSample(videos, count, img_w, img_h, cut_height)
        where = str(videos[0]) if len(videos) == 1 else f"{len(videos)} videos under {path}"
        return sample, f"{len(sample)} of the {sample.total} frames of {where}"
    try:
        images = ImageListDataset(path, img_w, img_h, cut_height, skip_unreadable)
    except DatasetError as err:
        raise DatasetError(
            f"int8 calibration images: {err} (a folder of images, a text file of image paths, a "
            "video or a folder of videos)"
        ) from None
    indices = spread(len(images), count)
    return Subset(images, indices), f"{len(indices)} of the {len(images)} images of {path}"
