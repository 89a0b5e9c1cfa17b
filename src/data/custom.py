"""Your own data in CULane's file format, with its own image size, crop and lane count.

Layout under the root:

* ``list/<split>.txt``: one image path per line, relative to the root (a leading "/" is
  allowed, further fields are ignored, so CULane's ``train_gt.txt`` lines work too; for the
  train split ``list/train_gt.txt`` is used when ``list/train.txt`` is absent);
* next to every image ``<name>.<ext>``, its label ``<name>.lines.txt``: one lane per line,
  ``x1 y1 x2 y2 ...`` in pixels of the original image (an empty file = no lanes).

Any split name works (``list/<name>.txt``). Every image must have the dataset's size (the
config's ori_w x ori_h, checked when it is loaded; scripts/check_dataset.py lists the sizes).
Scored with the CULane metric on that size. The reader is CULane's (``culane``): same label
parsing, same training filter, same errors naming ``file:line``.
"""

from __future__ import annotations

from pathlib import Path

from .culane import label_path_for, load_lanes, parse_culane_label
from .errors import DatasetError, decode_text, numbered_lines, read_bytes
from .samples import LaneSample

EXAMPLE = "list/train.txt holding lines such as images/0001.jpg, and images/0001.lines.txt"


def custom_list_path(root: Path, split: str) -> Path:
    """``<root>/list/<split>.txt`` (``train_gt.txt`` for train when ``train.txt`` is absent)."""
    if not split or "/" in split or split.startswith("."):
        raise DatasetError(f"invalid split name {split!r}: expected a name such as train or val")
    path = root / "list" / f"{split}.txt"
    fallback = root / "list" / "train_gt.txt"
    if split == "train" and not path.is_file() and fallback.is_file():
        return fallback
    return path


def read_custom_list(list_path: Path) -> list[tuple[str, str]]:
    """(image name, ``file:line``) per non-blank line of a list file."""
    if not list_path.is_file():
        raise DatasetError(
            f"list file {list_path} is missing: a dataset in CULane's format has list/<split>.txt"
            f" with one image path per line and a <name>.lines.txt next to each image "
            f"(e.g. {EXAMPLE})"
        )
    entries = []
    for text, where in numbered_lines(list_path):
        img_name = text.split()[0].lstrip("/")
        if not img_name:
            raise DatasetError(f"{where}: expected an image path such as images/0001.jpg")
        entries.append((img_name, where))
    return entries


def read_custom_label(label_path: str, where: str) -> list:
    """The lanes of a label file (checked); DatasetError naming the list line for a missing
    label and ``file:line`` for a malformed one."""
    missing = (
        f"label file {label_path} is missing (image listed at {where}); every image needs a "
        "<name>.lines.txt next to it (an empty file for an image without lanes)"
    )
    data = read_bytes(label_path, "label file", missing)
    return parse_culane_label(decode_text(data, label_path), label_path)


def read_custom_split(
    root: str | Path, split: str, image_size: tuple[int, int] | None = None
) -> list[LaneSample]:
    """All samples of ``split`` under ``root``. ``image_size``: the configured (width, height),
    recorded as each sample's ``ori_size`` (None: not recorded). Labels are parsed here (a bad
    one fails before training) and read again when a sample is loaded."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist: expected list/<split>.txt and the images with "
            f"their .lines.txt labels (e.g. {EXAMPLE}); set dataset.root"
        )
    list_path = custom_list_path(root, split)
    entries = read_custom_list(list_path)
    if not entries:
        raise DatasetError(f"list file {list_path} of split {split!r} is empty")
    ori_size = None if image_size is None else (int(image_size[1]), int(image_size[0]))
    samples = []
    for img_name, where in entries:
        img_path = str(root / img_name)
        label_path = label_path_for(img_path)
        read_custom_label(label_path, where)
        samples.append(
            LaneSample(
                img_name=img_name,
                img_path=img_path,
                source=where,
                label_path=label_path,
                label_reader=load_lanes,
                ori_size=ori_size,
            )
        )
    return samples
