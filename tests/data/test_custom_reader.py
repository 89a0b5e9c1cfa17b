"""The user's own data in CULane's file format (``custom``): its own image size and lane count,
read, checked (with the summary check_dataset prints) and turned into training items."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from src.data import DatasetError, build_dataset
from src.data.config import DatasetConfig
from src.data.custom import read_custom_split
from tests.data.lane_trees import SRLANE_TARGETS, culane_lanes, lane_image, write_jpeg

SIZE = (960, 540)  # (width, height)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_dataset.py"


def write_custom_tree(root: Path, counts: dict[str, int], lanes_per_image: list[int]) -> None:
    """``list/<split>.txt`` and ``images/<split>/<i>.jpg`` + ``.lines.txt`` of SIZE; image i
    of every split has ``lanes_per_image[i % len]`` lanes."""
    rng = np.random.default_rng(0)
    (root / "list").mkdir(parents=True)
    for split, n in counts.items():
        names = []
        for i in range(n):
            name = f"images/{split}/{i:04d}.jpg"
            lanes = culane_lanes(rng, lanes_per_image[i % len(lanes_per_image)], SIZE)
            write_jpeg(root / name, lane_image(*SIZE, lanes))
            text = "".join(" ".join(f"{v:.2f}" for v in lane.reshape(-1)) + "\n" for lane in lanes)
            (root / name).with_suffix(".lines.txt").write_text(text)
            names.append(name)
        (root / "list" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))


def custom_config(root: Path, **overrides) -> DatasetConfig:
    values = dict(
        name="custom", root=str(root), ori_w=SIZE[0], ori_h=SIZE[1], cut_height=180, max_lanes=6
    )
    values.update(overrides)
    return DatasetConfig(**values)


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("custom") / "mine"
    write_custom_tree(root, {"train": 4, "val": 2}, [6, 3, 5, 2])
    return root


def test_reads_lists_and_labels_of_any_size(custom_root):
    train = read_custom_split(custom_root, "train", SIZE)
    assert [s.img_name for s in train] == [f"images/train/{i:04d}.jpg" for i in range(4)]
    assert all(s.ori_size == (540, 960) for s in train)
    assert train[1].source == f"{custom_root / 'list' / 'train.txt'}:2"
    assert [len(s.load_lanes()[0]) for s in train] == [6, 3, 5, 2]


def test_train_gt_list_is_used_when_there_is_no_train_list(tmp_path):
    write_custom_tree(tmp_path, {"train": 2}, [2])
    lines = (tmp_path / "list" / "train.txt").read_text().splitlines()
    (tmp_path / "list" / "train.txt").unlink()
    (tmp_path / "list" / "train_gt.txt").write_text(
        "".join(f"/{line} /seg/{i}.png 1 1 0 0\n" for i, line in enumerate(lines))
    )
    assert len(read_custom_split(tmp_path, "train")) == 2


def test_errors_name_file_and_line(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: expected list/<split>.txt"):
        read_custom_split(tmp_path / "missing", "train")
    write_custom_tree(tmp_path, {"val": 2}, [2])
    with pytest.raises(DatasetError, match="list file .*train.txt is missing"):
        read_custom_split(tmp_path, "train")
    label = tmp_path / "images" / "val" / "0001.lines.txt"
    label.write_text("1 2 3 4\n5 6 x 8\n")
    with pytest.raises(DatasetError, match=f"{label}:2: expected numbers"):
        read_custom_split(tmp_path, "val")
    label.unlink()
    with pytest.raises(DatasetError, match=r"missing \(image listed at .*val.txt:2\)"):
        read_custom_split(tmp_path, "val")


def test_training_items_with_six_lanes(custom_root):
    train = build_dataset(custom_config(custom_root), "train", True, 0, SRLANE_TARGETS)
    item = train[(0, 0)]
    assert tuple(item["gt_lane"].shape) == (6, 76) and item["meta"]["ori_size"] == (540, 960)
    val = build_dataset(custom_config(custom_root), "val", training=False)
    assert len(val[0]["meta"]["lanes"]) == 6
    with pytest.raises(DatasetError, match="ori_w x ori_h = 1280x720"):
        build_dataset(custom_config(custom_root, ori_w=1280, ori_h=720), "val", False)[0]


def test_check_dataset_summary(custom_root, capsys):
    spec = importlib.util.spec_from_file_location("check_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--dataset", "custom", "--root", str(custom_root), "--workers", "1"]
    assert module.main([*args, "--max-lanes", "4", "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "- split train: 4 samples" in out and "- split val: 2 samples" in out
    assert "lanes per image: 2: 1, 3: 1, 5: 1, 6: 1" in out
    assert "image sizes: 960x540: 4" in out
    assert "max_lanes=4: 3 lane(s) in 2 image(s) beyond it" in out
    assert "the most in one image: 6" in out
    assert module.main([*args, "--size", "1280x720"]) == 1
    out = capsys.readouterr().out
    assert "is 960x540, expected 1280x720" in out and "FAILED: 6 problem(s)" in out
