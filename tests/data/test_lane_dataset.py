"""Dataset keys, reproducible per-sample augmentation across workers and epochs, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from src.data import EpochSampler, build_dataset, collate_lanes
from src.data.augment import draw_augmentation
from src.data.config import DatasetConfig
from tests.data.lane_trees import SRLANE_TARGETS, tusimple_config, write_tusimple_tree


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("tusimple")
    write_tusimple_tree(path, per_file=6, width=1280, height=720)
    return path


@pytest.fixture(scope="module")
def train(root):
    return build_dataset(tusimple_config(root), "train", True, 11, SRLANE_TARGETS)


def _draw(dataset, epoch, index):
    cfg = dataset.cfg
    return draw_augmentation(
        np.random.default_rng([dataset.seed, epoch, index]), cfg.augment, cfg.img_w, cfg.img_h
    ).as_dict()


def test_keys_and_draws(train):
    assert len(train) == 12
    item = train[(3, 5)]
    assert item["meta"]["augment"] == _draw(train, 3, 5)
    again = train[(3, 5)]
    assert torch.equal(item["img"], again["img"]) and torch.equal(item["gt_lane"], again["gt_lane"])
    # A plain index is epoch 0.
    assert train[4]["meta"]["augment"] == train[(0, 4)]["meta"]["augment"] == _draw(train, 0, 4)
    # Other epochs and other seeds draw differently.
    assert sum(_draw(train, 0, i) != _draw(train, 1, i) for i in range(12)) >= 11
    other = build_dataset(train.cfg, "train", True, 12, SRLANE_TARGETS)
    assert other[(3, 5)]["meta"]["augment"] != item["meta"]["augment"]
    with pytest.raises(IndexError):
        train[(0, 12)]
    with pytest.raises(TypeError):
        train["3"]


def test_item_types(train):
    item = train[(1, 2)]
    assert item["img"].dtype == torch.float32 and item["img"].shape == (3, 128, 320)
    assert 0.0 <= float(item["img"].min()) and float(item["img"].max()) <= 1.0
    assert item["gt_lane"].dtype == torch.float32 and item["gt_lane"].shape == (5, 76)
    assert [a.dtype for a in item["gt_angle"]] == [torch.float32] * 3
    assert all(torch.isfinite(a).all() for a in item["gt_angle"])
    assert torch.isfinite(item["gt_lane"]).all()


def _run_loader(dataset, workers, epochs=(0, 1), seed=0):
    sampler = EpochSampler(len(dataset), shuffle=True, seed=seed)
    loader = DataLoader(
        dataset, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=collate_lanes
    )
    batches = []
    for epoch in epochs:
        sampler.seek(epoch)
        batches.extend(loader)
    return batches


def test_worker_streams_differ_and_reproduce(train):
    two = _run_loader(train, workers=2)
    # Each sample's draw is the one of its (seed, epoch, index) key, whichever worker ran it.
    keys = []
    for epoch in (0, 1):
        order = EpochSampler(len(train), shuffle=True, seed=0)
        order.seek(epoch)
        keys.extend(order)
    metas = [meta for batch in two for meta in batch["meta"]]
    for (epoch, index), meta in zip(keys, metas, strict=True):
        assert meta["augment"] == _draw(train, epoch, index)
        assert meta["img_name"] == train.samples[index].img_name
    # Worker 0 ran batches 0, 2, 4...; worker 1 ran 1, 3, 5...: their streams differ draw by
    # draw (the reference repeats one stream in every worker).
    worker0 = [m["augment"] for b in two[0::2] for m in b["meta"]]
    worker1 = [m["augment"] for b in two[1::2] for m in b["meta"]]
    assert all(a != b for a, b in zip(worker0, worker1, strict=False))
    # The same seed gives the same streams, with any number of workers.
    again = _run_loader(train, workers=2)
    serial = _run_loader(train, workers=0)
    for a, b, c in zip(two, again, serial, strict=True):
        assert torch.equal(a["img"], b["img"]) and torch.equal(a["img"], c["img"])
        assert torch.equal(a["gt_lane"], c["gt_lane"])
    # Another sampler seed shuffles differently but every sample still follows its key.
    other = _run_loader(train, workers=0, epochs=(0,), seed=1)
    assert [m["img_name"] for b in other for m in b["meta"]] != [
        m["img_name"] for b in serial[: len(other)] for m in b["meta"]
    ]


def test_collate(train):
    batch = collate_lanes([train[(0, i)] for i in range(3)])
    assert batch["img"].shape == (3, 3, 128, 320)
    assert batch["gt_lane"].shape == (3, 5, 76)
    assert [tuple(a.shape) for a in batch["gt_angle"]] == [(3, 16, 40), (3, 8, 20), (3, 4, 10)]
    assert [m["img_name"] for m in batch["meta"]] == [s.img_name for s in train.samples[:3]]
    with pytest.raises(ValueError):
        collate_lanes([])


def test_omegaconf_config_and_unset_fields(root):
    node = OmegaConf.structured(tusimple_config(root))
    dataset = build_dataset(node, "val", training=False)
    assert isinstance(dataset.cfg, DatasetConfig) and len(dataset) == 6
    unset = OmegaConf.structured(DatasetConfig(name="tusimple", root=str(root)))
    with pytest.raises(Exception, match="ori_w, ori_h, cut_height, max_lanes not set"):
        build_dataset(unset, "val", training=False)


def test_invalid_config_values(root):
    cfg = tusimple_config(root)
    cfg.augment.third_op = "gaussian"
    with pytest.raises(Exception, match="third_op must be one of"):
        build_dataset(cfg, "train", training=True)
    cfg = tusimple_config(root, cut_height=720)
    with pytest.raises(Exception, match="cut_height 720"):
        build_dataset(cfg, "train", training=True)
    cfg = tusimple_config(root, name="kitti")
    with pytest.raises(Exception, match="dataset.name must be one of"):
        build_dataset(cfg, "train", training=True)


def test_image_without_lanes(tmp_path):
    write_tusimple_tree(tmp_path, per_file=2)  # the second image keeps its lanes
    label = tmp_path / "label_data_0531.json"
    text = label.read_text().replace('"lanes": [[', '"lanes": [], "x": [[', 1)
    label.write_text(text)
    item = build_dataset(tusimple_config(tmp_path), "val", True, 0, SRLANE_TARGETS)[(0, 0)]
    assert (item["gt_lane"][:, 1] == 0).all() and item["meta"]["lanes"] == []
    assert all(float(a.sum()) == 0 for a in item["gt_angle"])


def test_prediction_images_from_folder_and_list(tmp_path):
    from src.data.images import ImageListDataset
    from tests.data.lane_trees import lane_image, write_jpeg

    write_jpeg(tmp_path / "imgs" / "b" / "2.jpg", lane_image(640, 360, []))
    write_jpeg(tmp_path / "imgs" / "a.jpg", lane_image(1280, 720, []))
    folder = ImageListDataset(tmp_path / "imgs", 320, 128, 80)
    assert [e[1] for e in folder.entries] == ["a.jpg", "b/2.jpg"]
    batch = collate_lanes([folder[(0, 0)], folder[1]])
    assert batch["img"].shape == (2, 3, 128, 320) and "gt_lane" not in batch
    assert [m["ori_size"] for m in batch["meta"]] == [(720, 1280), (360, 640)]
    assert [m["index"] for m in batch["meta"]] == [0, 1]
    listing = tmp_path / "list.txt"
    listing.write_text("imgs/a.jpg\n\nimgs/missing.jpg\n")
    with pytest.raises(Exception, match=r"list.txt:3: image .*missing.jpg does not exist"):
        ImageListDataset(listing, 320, 128, 80)
    listing.write_text("imgs/a.jpg\n")
    assert ImageListDataset(listing, 320, 128, 80)[0]["meta"]["img_name"] == "imgs/a.jpg"
    with pytest.raises(Exception, match="fewer than cut_height=400"):
        ImageListDataset(tmp_path / "imgs", 320, 128, 400)[1]
    with pytest.raises(Exception, match="does not exist"):
        ImageListDataset(tmp_path / "nothing", 320, 128, 80)
