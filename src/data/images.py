"""Unlabelled images for prediction: a folder (searched recursively) or a list file of paths."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .errors import DatasetError
from .pipeline import ImageReadError, crop_and_resize, input_array, read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(source: str | Path) -> list[tuple[Path, str, str]]:
    """(absolute path, name, ``file:line`` or path) for every image of a folder (recursive,
    sorted; name relative to the folder) or of a text file with one path per line (relative
    paths are taken relative to the file's directory; name as written)."""
    source = Path(source).expanduser().absolute()
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
        return [(p, str(p.relative_to(source)), str(p)) for p in paths]
    if not source.is_file():
        raise DatasetError(
            f"prediction input {source} does not exist: give a folder of images or "
            "a text file with one image path per line"
        )
    entries = []
    for line_no, text in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
        name = text.strip()
        if not name:
            continue
        path = Path(name).expanduser()
        path = path if path.is_absolute() else source.parent / path
        if not path.is_file():
            raise DatasetError(f"{source}:{line_no}: image {path} does not exist")
        entries.append((path, name.lstrip("/"), f"{source}:{line_no}"))
    if not entries:
        raise DatasetError(f"{source} lists no images")
    return entries


class ImageListDataset(Dataset):
    """Images cropped at ``cut_height`` and resized to img_w x img_h, as in evaluation.

    Keys are indices or (epoch, index). Items: "img" float32 (3, img_h, img_w) RGB in [0, 1]
    and "meta" with index, img_path, img_name, ori_size (h, w), cut_height, category (None)
    and lanes (empty): no targets.
    """

    def __init__(self, source: str | Path, img_w: int, img_h: int, cut_height: int) -> None:
        self.entries = list_images(source)
        self.img_w, self.img_h, self.cut_height = int(img_w), int(img_h), int(cut_height)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index = int(key[1]) if isinstance(key, (tuple, list)) else int(key)
        path, name, where = self.entries[index]
        try:
            image = read_image(str(path))
        except ImageReadError as err:
            raise DatasetError(f"{err} (listed at {where})") from None
        height, width = image.shape[:2]
        if not 0 <= self.cut_height < height:
            raise DatasetError(
                f"image {path} has {height} rows, fewer than cut_height={self.cut_height}"
            )
        img = input_array(crop_and_resize(image, self.cut_height, self.img_w, self.img_h))
        return {
            "img": torch.from_numpy(img),
            "meta": {
                "index": index,
                "img_path": str(path),
                "img_name": name,
                "ori_size": (height, width),
                "cut_height": self.cut_height,
                "category": None,
                "lanes": [],
            },
        }
