"""Unlabelled images for prediction: a folder (searched recursively) or a list file of paths."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetError, absent, numbered_lines
from .pipeline import ImageReadError, crop_and_resize, input_array, read_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(source: str | Path, keep_missing: bool = False) -> list[tuple[Path, str, str]]:
    """(absolute path, name, ``file:line`` or path) for every image of a folder (recursive,
    sorted; name relative to the folder) or of a UTF-8 text file with one path per line
    (relative paths are taken relative to the file's directory; name as written). A listed
    image that does not exist is a DatasetError (``file:line``) unless ``keep_missing``."""
    source = Path(source).expanduser().absolute()
    if source.is_dir():
        paths = sorted(
            p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not paths:
            raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {source}")
        return [(p, str(p.relative_to(source)), str(p)) for p in paths]
    if not source.is_file():
        raise DatasetError(
            f"prediction input {source} does not exist: give a folder of images or "
            "a text file with one image path per line"
        )
    entries = []
    for text, where in numbered_lines(source):
        name = text.strip()
        path = Path(name).expanduser()
        path = path if path.is_absolute() else source.parent / path
        if not keep_missing and not path.is_file():
            raise DatasetError(f"{where}: image {path} {absent(path)}")
        entries.append((path, name.lstrip("/"), where))
    if not entries:
        raise DatasetError(f"{source} lists no images: expected one image path per line")
    _warn_repeated(entries)
    return entries


def _warn_repeated(entries: list[tuple[Path, str, str]]) -> None:
    """An image listed twice is predicted twice (one row each): legal, logged with the count."""
    first: dict[Path, str] = {}
    repeats = []
    for path, _, where in entries:
        if path in first:
            repeats.append(f"{path} at {where} (first at {first[path]})")
        first.setdefault(path, where)
    if repeats:
        log.warning(
            "%d image(s) listed more than once (each gets a prediction row), e.g. %s",
            len(repeats),
            repeats[0],
        )


class ImageListDataset(Dataset):
    """Images cropped at ``cut_height`` and resized to img_w x img_h, as in evaluation.

    Keys are indices or (epoch, index). Items: "img" float32 (3, img_h, img_w) RGB in [0, 1]
    and "meta" with index, img_path, img_name, ori_size (h, w), cut_height, category (None),
    lanes (empty), skipped (None) and skip_reason (None): no targets.

    A listed image that does not exist is a DatasetError at construction (``list file:line``).
    An image that cannot be used (unreadable, empty, not decodable, or with no more rows than
    ``cut_height``) raises DatasetError when loaded, naming the image, why, and where it is
    listed. With ``skip_unreadable`` neither raises (a missing listed image is kept and fails
    when loaded): such an image gives a stand-in item, "img" all zeros, meta "skipped" = its
    path (str, = img_path), "skip_reason" = the DatasetError's message, ori_size (cut_height +
    img_h, img_w) (decodable, not the image's), the other keys as usual. The caller drops
    stand-ins (``meta["skipped"]`` is not None) before writing or drawing and lists them; every
    listed image gives exactly one item, so indices and batches stay as they are.
    """

    def __init__(
        self,
        source: str | Path,
        img_w: int,
        img_h: int,
        cut_height: int,
        skip_unreadable: bool = False,
    ) -> None:
        self.entries = list_images(source, keep_missing=skip_unreadable)
        self.img_w, self.img_h, self.cut_height = int(img_w), int(img_h), int(cut_height)
        self.skip_unreadable = bool(skip_unreadable)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index = int(key[1]) if isinstance(key, (tuple, list)) else int(key)
        path, name, where = self.entries[index]
        try:
            image = self._read(path, where)
        except DatasetError as err:
            if not self.skip_unreadable:
                raise
            log.warning("%s; skipped", err)
            blank = torch.zeros((3, self.img_h, self.img_w), dtype=torch.float32)
            # A size the model can decode at (the batch may go through the model before the
            # caller drops this item); not the image's size, which is unknown.
            meta = self._meta(index, path, name, (self.cut_height + self.img_h, self.img_w))
            meta.update(skipped=str(path), skip_reason=str(err))
            return {"img": blank, "meta": meta}
        img = input_array(crop_and_resize(image, self.cut_height, self.img_w, self.img_h))
        meta = self._meta(index, path, name, image.shape[:2])
        return {"img": torch.from_numpy(img), "meta": meta}

    def _read(self, path: Path, where: str) -> np.ndarray:
        """The decoded image; DatasetError (image, reason, listing) when it cannot be used."""
        listed = "" if where == str(path) else f" (listed at {where})"
        try:
            image = read_image(str(path))
        except ImageReadError as err:
            raise DatasetError(f"{err}{listed}") from None
        height = image.shape[0]
        if not 0 <= self.cut_height < height:
            raise DatasetError(
                f"image {path}{listed} has {height} rows, fewer than cut_height="
                f"{self.cut_height}: expected an image taller than cut_height"
            )
        return image

    def _meta(self, index: int, path: Path, name: str, ori_size: tuple[int, int]) -> dict:
        return {
            "index": index,
            "img_path": str(path),
            "img_name": name,
            "ori_size": (int(ori_size[0]), int(ori_size[1])),
            "cut_height": self.cut_height,
            "category": None,
            "lanes": [],
            "skipped": None,
            "skip_reason": None,
        }
