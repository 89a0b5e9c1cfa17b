"""Videos for prediction: which inputs are videos, and their frames (OpenCV)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError
from .images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")


def list_videos(source: str | Path) -> list[Path]:
    """The videos of a prediction input: [source] for a video file, the videos under a folder
    (recursive, sorted) that holds videos and no images; [] for anything else (images)."""
    source = Path(source).expanduser().absolute()
    if source.is_file():
        return [source] if source.suffix.lower() in VIDEO_SUFFIXES else []
    if not source.is_dir():
        return []
    files = [p for p in source.rglob("*") if p.is_file()]
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        return []
    return sorted(p for p in files if p.suffix.lower() in VIDEO_SUFFIXES)


class VideoFrames:
    """The frames of one video (BGR uint8) with its fps, size and frame count (as the container
    states it; 0 when unknown). DatasetError when OpenCV cannot open it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise DatasetError(f"cannot open video {path}: missing or not a readable video")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) or 30.0  # 0 when unknown
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_count = max(0, int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)))

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = self.capture.read()
                if not ok:
                    return
                yield frame
        finally:
            self.capture.release()


def video_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """An mp4v (MPEG-4 part 2) writer, which the opencv-python-headless wheel can encode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write the video {path} (codec mp4v)")
    return writer
