"""The training loop's side of the input pipeline (src/data/device_input.py): the uint8
hand-over gives today's float inputs bit for bit, the device hand-over the same draws and
targets as the worker mode, and where the image steps run is chosen and logged."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from src.data import (
    EpochSampler,
    build_dataset,
    collate_lanes,
    configure_training_input,
    device_batches,
    prepare_batch,
)
from src.data.device_augment import colour_tables
from src.data.device_input import choose_augment_on
from src.data.pipeline import input_array
from tests.data.lane_trees import SRLANE_TARGETS, tusimple_config, write_tusimple_tree

BATCH = 3


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("tusimple")
    write_tusimple_tree(path, per_file=6, width=1280, height=720)
    return path


def _train(root, handover: str, **overrides):
    dataset = build_dataset(tusimple_config(root, **overrides), "train", True, 11, SRLANE_TARGETS)
    dataset.set_handover(handover)
    return dataset


def _loader(dataset, workers: int) -> DataLoader:
    sampler = EpochSampler(len(dataset), shuffle=True, seed=0)
    return DataLoader(
        dataset, BATCH, sampler=sampler, num_workers=workers, collate_fn=collate_lanes, timeout=120
    )


def _keys(dataset) -> list[tuple[int, int]]:
    sampler = EpochSampler(len(dataset), shuffle=True, seed=0)
    sampler.seek(0)
    return list(sampler)


def test_uint8_handover_gives_todays_inputs_bit_for_bit(root):
    """The first training batches through a worker process (uint8) and prepare_batch equal the
    float32 items of before, built from the same keys."""
    today = _train(root, "float")
    handed = _train(root, "worker")
    keys = _keys(today)
    batches = list(device_batches(_loader(handed, workers=1), "cpu"))
    assert len(batches) == len(keys) // BATCH
    for number, batch in enumerate(batches):
        expected = torch.stack(
            [today[k]["img"] for k in keys[number * BATCH : (number + 1) * BATCH]]
        )
        assert batch["img"].dtype == torch.float32 and batch["img"].is_contiguous()
        assert torch.equal(batch["img"], expected), number
        assert "augment" not in batch
    # Every grey level converts as input_array does (x / 255 in float32).
    levels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, 0).transpose(1, 2, 0)
    item = {"img": torch.from_numpy(np.ascontiguousarray(levels))[None]}
    assert torch.equal(prepare_batch(item, "cpu")["img"][0], torch.from_numpy(input_array(levels)))


def test_device_handover_draws_and_targets_equal_the_worker_mode(root):
    worker = _train(root, "worker")
    device = _train(root, "device")
    for key in _keys(worker)[:6]:
        a, b = worker[key], device[key]
        assert a["meta"]["augment"] == b["meta"]["augment"] is not None
        assert a["meta"]["img_name"] == b["meta"]["img_name"]
        assert torch.equal(a["gt_lane"], b["gt_lane"])
        assert all(torch.equal(x, y) for x, y in zip(a["gt_angle"], b["gt_angle"], strict=True))
        assert "augment" in b and "augment" not in a
        want = prepare_batch(collate_lanes([a]), "cpu")["img"]
        got = prepare_batch(collate_lanes([b]), "cpu")["img"]
        diff = ((want - got).abs() * 255).round()
        assert diff.mean() <= 1.0 and torch.quantile(diff.flatten(), 0.999) <= 8


def test_augmentation_off_hands_over_views_without_parameters(root):
    dataset = _train(root, "device")
    dataset.pipeline.augment = None  # augment.enabled=false
    item = dataset[(0, 1)]
    assert item["img"].dtype == torch.uint8 and item["img"].shape == (128, 320, 3)
    assert "augment" not in item and item["meta"]["augment"] is None


def test_augment_on_is_chosen_and_logged(root, caplog):
    assert choose_augment_on("auto", torch.device("cuda")) == "device"
    assert choose_augment_on("auto", torch.device("cpu")) == "worker"
    assert choose_augment_on("device", torch.device("cpu")) == "device"
    assert choose_augment_on("worker", torch.device("cuda")) == "worker"
    with pytest.raises(ValueError, match="auto, worker or device"):
        choose_augment_on("gpu", torch.device("cpu"))
    dataset = _train(root, "float")
    with caplog.at_level(logging.INFO, logger="src.data.device_input"):
        assert configure_training_input(dataset, "auto", torch.device("cpu")) == "worker"
    assert dataset.handover == "worker"
    expected = (
        "augment_on=worker: image augmentation in the DataLoader workers (auto, training on cpu)"
    )
    assert expected in caplog.text
    with pytest.raises(ValueError, match="hand-over must be one of"):
        dataset.set_handover("uint8")


def test_workers_forked_after_the_colour_tables_still_decode(root):
    """The colour tables are built with OpenCV in the training process before validation
    loaders fork their workers: OpenCV's thread pool must not be left started (its lock would
    be copied held and the workers would hang; the loader's timeout would fail this test)."""
    colour_tables("Lab", torch.device("cpu"))
    dataset = _train(root, "worker")
    batches = list(_loader(dataset, workers=1))
    assert len(batches) == len(dataset) // BATCH
