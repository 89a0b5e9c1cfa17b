"""read_image: every image that cannot be used is an ImageReadError naming its path."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from src.data.pipeline import ImageReadError, read_image


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (90, 160, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"\xff\xd8 truncated", "not a valid image"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 20, "not a valid image"),
        (None, "a truncated JPEG"),  # a JPEG cut in half
    ],
    ids=["zero_bytes", "truncated_header", "garbage", "truncated_jpeg"],
)
def test_unusable_image_is_an_image_read_error_naming_the_path(tmp_path, content, reason):
    path = tmp_path / "20.jpg"
    path.write_bytes(_jpeg_bytes()[: len(_jpeg_bytes()) // 2] if content is None else content)
    with pytest.raises(ImageReadError) as err:
        read_image(str(path))
    assert f"cannot decode image {path}" in str(err.value) and reason in str(err.value)


def test_missing_directory_and_nul_paths_are_image_read_errors(tmp_path):
    for path in (tmp_path / "none.jpg", tmp_path, f"{tmp_path}/a\0.jpg"):
        with pytest.raises(ImageReadError, match="cannot read image"):
            read_image(str(path))


def test_valid_image_decodes(tmp_path):
    path = tmp_path / "ok.jpg"
    path.write_bytes(_jpeg_bytes())
    assert read_image(str(path)).shape == (90, 160, 3)
