"""The synthetic TuSimple generator: format, determinism, caching, concurrency, difficulty."""

from __future__ import annotations

import json
import multiprocessing

import cv2
import numpy as np
import pytest

from src.data import DatasetError, build_dataset, generate_synthetic_tusimple
from src.data.config import SyntheticConfig
from src.data.synthetic import MANIFEST, default_synthetic_root
from src.data.synthetic_scene import SceneTextures, h_samples_for, render_scene
from src.data.tusimple import read_tusimple_split
from tests.data.blind_baseline import mean_lane_prediction, tusimple_f1
from tests.data.lane_trees import tusimple_config

SMALL = SyntheticConfig(num_train=7, num_val=3, num_test=2, width=320, height=180, seed=3)


def _label_lines(root, name: str) -> list[dict]:
    return [json.loads(line) for line in (root / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    return generate_synthetic_tusimple(tmp_path_factory.mktemp("synth") / "tree", SMALL, workers=1)


def test_tree_is_real_tusimple_format(small_tree):
    counts = {
        "label_data_0313.json": 4,
        "label_data_0601.json": 3,
        "label_data_0531.json": 3,
        "test_label.json": 2,
    }
    rows = h_samples_for(180)
    assert rows[0] == 40 and rows[-1] == 178 and len(rows) == 56
    for name, count in counts.items():
        lines = _label_lines(small_tree, name)
        assert len(lines) == count
        for record in lines:
            assert set(record) == {"lanes", "h_samples", "raw_file"}
            assert record["h_samples"] == rows
            assert record["raw_file"].startswith("clips/") and record["raw_file"].endswith(
                "/20.jpg"
            )
            assert 2 <= len(record["lanes"]) <= 5
            for lane in record["lanes"]:
                assert len(lane) == len(rows) and all(isinstance(x, int) for x in lane)
                assert all(x == -2 or 0 <= x < 320 for x in lane)
                assert sum(x >= 0 for x in lane) >= 6
            image = cv2.imread(str(small_tree / record["raw_file"]))
            assert image.shape == (180, 320, 3)
    manifest = json.loads((small_tree / MANIFEST).read_text())
    assert manifest["complete"] and manifest["config"]["num_train"] == 7
    assert len(read_tusimple_split(small_tree, "train")) == 7
    assert len(read_tusimple_split(small_tree, "trainval")) == 10


def test_deterministic_and_independent_of_workers(small_tree, tmp_path):
    other = generate_synthetic_tusimple(tmp_path / "again", SMALL, workers=2)
    for name in ("label_data_0313.json", "label_data_0531.json", "test_label.json"):
        assert (other / name).read_bytes() == (small_tree / name).read_bytes()
    first = _label_lines(small_tree, "label_data_0601.json")[1]["raw_file"]
    assert (other / first).read_bytes() == (small_tree / first).read_bytes()
    reseeded = SyntheticConfig(**{**SMALL.__dict__, "seed": 4})
    changed = generate_synthetic_tusimple(tmp_path / "reseeded", reseeded, workers=1)
    assert (changed / "label_data_0313.json").read_bytes() != (
        small_tree / "label_data_0313.json"
    ).read_bytes()


def test_reused_regenerated_or_refused(tmp_path):
    root = tmp_path / "synthetic"
    generate_synthetic_tusimple(root, SMALL, workers=1)
    label = root / "label_data_0313.json"
    stamp = label.stat().st_mtime_ns
    generate_synthetic_tusimple(root, SMALL, workers=1)
    assert label.stat().st_mtime_ns == stamp  # same config: reused as is
    bigger = SyntheticConfig(**{**SMALL.__dict__, "num_val": 5})
    generate_synthetic_tusimple(root, bigger, workers=1)
    assert len(_label_lines(root, "label_data_0531.json")) == 5  # other config: regenerated
    assert not list(tmp_path.glob(".synthetic.tmp-*")) and not list(
        tmp_path.glob(".synthetic.old-*")
    )
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a generated dataset"):
        generate_synthetic_tusimple(foreign, SMALL, workers=1)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_one_training_image_is_refused_as_it_would_leave_a_label_file_empty(tmp_path):
    one = SyntheticConfig(**{**SMALL.__dict__, "num_train": 1})
    with pytest.raises(DatasetError, match="num_train must be >= 2"):
        generate_synthetic_tusimple(tmp_path / "synthetic", one, workers=1)
    assert not (tmp_path / "synthetic").exists()


def _generate_and_report(root: str, queue) -> None:
    cfg = SyntheticConfig(num_train=30, num_val=4, num_test=4, width=320, height=180, seed=3)
    try:
        queue.put(str(generate_synthetic_tusimple(root, cfg, workers=1)))
    except Exception as err:  # reported to the test process
        queue.put(repr(err))


def test_concurrent_generation_yields_one_complete_tree(tmp_path):
    """Two processes (as two DDP ranks) generating the same tree at once."""
    root = tmp_path / "shared"
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    procs = [
        context.Process(target=_generate_and_report, args=(str(root), queue)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    outputs = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0] and outputs == [str(root)] * 2
    assert len(read_tusimple_split(root, "train")) == 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shared.tmp")]


def test_build_dataset_generates_on_first_use(tmp_path):
    cfg = tusimple_config(
        None,
        name="synthetic",
        cache_dir=str(tmp_path / "cache"),
        ori_w=320,
        ori_h=180,
        cut_height=40,
        synthetic=SMALL,
    )
    dataset = build_dataset(cfg, "val", training=False)
    assert len(dataset) == 3
    assert dataset.root == str(default_synthetic_root(SMALL, str(tmp_path / "cache")))
    item = dataset[0]
    assert item["img"].shape == (3, 128, 320) and len(item["meta"]["h_samples"]) == 56
    bad = tusimple_config(tmp_path / "s", name="synthetic", synthetic=SMALL)
    with pytest.raises(DatasetError, match="dataset.synthetic is 320x180 but dataset.ori_w"):
        build_dataset(bad, "train", training=True)


def _scenes(count: int, width: int, height: int, stream: int) -> list:
    textures = SceneTextures.create(width, height, 0)
    return [
        render_scene(np.random.default_rng([0, stream, i]), width, height, textures)
        for i in range(count)
    ]


def test_labels_lie_on_painted_lines():
    """Solid lines: the labelled x is brighter than the road a few lane-widths beside it."""
    on_paint = total = 0
    for scene in _scenes(25, 640, 360, 9):
        gray = cv2.cvtColor(scene.image, cv2.COLOR_BGR2GRAY).astype(int)
        for xs, style in zip(scene.lanes, scene.info["styles"], strict=True):
            if style != "solid":
                continue
            for x, y in zip(xs, scene.h_samples, strict=True):
                if x < 12 or x >= 640 - 12 or y < scene.h_samples[0]:
                    continue
                total += 1
                on_paint += gray[y, x] > max(gray[y, x - 10], gray[y, x + 10]) + 8
    assert total > 200 and on_paint / total > 0.8


def test_lane_positions_vary_so_image_blind_prediction_fails():
    width, height = 640, 360
    train = [{"lanes": s.lanes, "h_samples": s.h_samples} for s in _scenes(150, width, height, 0)]
    val = [{"lanes": s.lanes, "h_samples": s.h_samples} for s in _scenes(60, width, height, 2)]
    assert tusimple_f1([v["lanes"] for v in val], val)["f1"] == 1.0
    for slots in (2, 3, 4, 5):
        mean = mean_lane_prediction(train, slots)
        scores = tusimple_f1([mean] * len(val), val)
        assert scores["f1"] < 0.35 and scores["accuracy"] < 0.65, (slots, scores)
    counts = {len(v["lanes"]) for v in train}
    assert counts == {2, 3, 4, 5}
    bottoms = np.array([lane[-1] for v in train for lane in v["lanes"] if lane[-1] >= 0])
    assert bottoms.std() > 100  # lane positions spread widely at the bottom row
