"""The image augmentation on the device (dataset.augment_on=device) against the worker mode's
OpenCV: per step and for the whole chain, on fixed draws that cover every step and on random
draws, all in one batch (so that each sample's steps are picked out of a mixed batch). Worker
and device apply the same draws; the images agree within a grey level on average and 8 at the
99.9th percentile (issue 21), exactly for the steps without float arithmetic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from src.data.augment import AugmentDraw
from src.data.config import DatasetConfig
from src.data.device_augment import augment_batch
from src.data.pipeline import LanePipeline, Processed
from src.data.synthetic_scene import SceneTextures, render_scene
from tests.data.lane_trees import SRLANE_TARGETS, culane_lanes

WIDTH, HEIGHT = 1640, 590
NONE = AugmentDraw(False, None, None, None, None, None)
SPACES = ("YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV")
# (name, draw, exact): one entry per step and variant; exact = no float arithmetic involved.
STEPS = [
    ("flip", dataclasses.replace(NONE, hflip=True), True),
    ("channel shuffle", dataclasses.replace(NONE, channel_order=(2, 0, 1)), True),
    *(
        (f"brightness {space} {first}", dataclasses.replace(NONE, brightness=b), False)
        for space in SPACES
        for first, b in (
            ("add first", (space, 1.13, -8.6, True)),
            ("mul first", (space, 0.86, 9.2, False)),
        )
    ),
    ("hue/saturation -10", dataclasses.replace(NONE, hue_saturation=-10), False),
    ("hue/saturation +7", dataclasses.replace(NONE, hue_saturation=7), False),
    ("motion blur 3", dataclasses.replace(NONE, blur_or_noise=("motion_blur", 3, 0.0, 0.0)), False),
    (
        "motion blur 4",
        dataclasses.replace(NONE, blur_or_noise=("motion_blur", 4, 133.0, -0.7)),
        False,
    ),
    (
        "motion blur 5",
        dataclasses.replace(NONE, blur_or_noise=("motion_blur", 5, 33.0, 0.4)),
        False,
    ),
    ("median blur 3", dataclasses.replace(NONE, blur_or_noise=("median_blur", 3)), True),
    ("median blur 5", dataclasses.replace(NONE, blur_or_noise=("median_blur", 5)), True),
    (
        "dropout coarse",
        dataclasses.replace(NONE, blur_or_noise=("coarse_dropout", 0.3, 0.02, 5)),
        True,
    ),
    (
        "dropout fine",
        dataclasses.replace(NONE, blur_or_noise=("coarse_dropout", 0.05, 0.05, 6)),
        True,
    ),
    ("jpeg (worker)", dataclasses.replace(NONE, blur_or_noise=("jpeg", 9)), True),
    ("affine", dataclasses.replace(NONE, affine=(13.2, -7.7, 6.1, 1.13, -4.2)), False),
    ("affine half pixel", dataclasses.replace(NONE, affine=(0.5, 0.0, 0.0, 1.0, 0.0)), False),
    ("affine extreme", dataclasses.replace(NONE, affine=(-80.0, 32.0, -10.0, 0.8, 10.0)), False),
    (
        "jpeg + colour + flip + affine",
        AugmentDraw(
            True, (1, 2, 0), ("Lab", 1.1, 4.0, True), -6, ("jpeg", 12), (3.0, 2.0, 4.0, 0.9, 2.0)
        ),
        False,
    ),
    (
        "every device step",
        AugmentDraw(
            True,
            (2, 1, 0),
            ("HLS", 0.9, -3.0, False),
            9,
            ("median_blur", 5),
            (-9.0, 5.0, -3.0, 1.1, -6.0),
        ),
        False,
    ),
]


def _config(third_op: str) -> DatasetConfig:
    cfg = DatasetConfig(
        name="culane", root="/unused", ori_w=WIDTH, ori_h=HEIGHT, cut_height=270, max_lanes=4
    )
    cfg.augment = dataclasses.replace(cfg.augment, third_op=third_op)
    return cfg


@pytest.fixture(scope="module")
def scene():
    """A road view (800x320 RGB) from the synthetic renderer, and lanes that fit it."""
    textures = SceneTextures.create(WIDTH, HEIGHT, 0)
    image = render_scene(np.random.default_rng(3), WIDTH, HEIGHT, textures).image
    lanes = culane_lanes(np.random.default_rng(0), 4)
    return LanePipeline(_config("jpeg"), True, SRLANE_TARGETS).network_view(image), lanes


def _worker_and_device(pipeline: LanePipeline, view, lanes, draws) -> tuple[list, list, list]:
    """(worker-mode images, device-mode images, (worker, device) Processed pairs) of draws, the
    device images augmented as one batch."""
    expected, handed, pairs = [], [], []
    for draw in draws:
        worker = pipeline.process_view(view, (WIDTH, HEIGHT), lanes, draw, "worker")
        device = pipeline.process_view(view, (WIDTH, HEIGHT), lanes, draw, "device")
        expected.append(worker.image)
        handed.append(device)
        pairs.append((worker, device))
    images = torch.from_numpy(np.stack([p.image for p in handed])).permute(0, 3, 1, 2).contiguous()
    params = {
        k: torch.stack([torch.from_numpy(p.device_params[k]) for p in handed])
        for k in handed[0].device_params
    }
    out = augment_batch(images, params).permute(0, 2, 3, 1).numpy()
    return expected, list(out), pairs


def _differences(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(diff.mean()), float(np.percentile(diff, 99.9))


def _same_targets(worker: Processed, device: Processed) -> None:
    np.testing.assert_array_equal(worker.targets["gt_lane"], device.targets["gt_lane"])
    for a, b in zip(worker.targets["gt_angle"], device.targets["gt_angle"], strict=True):
        np.testing.assert_array_equal(a, b)
    assert worker.draw == device.draw


def test_each_step_matches_opencv(scene):
    view, lanes = scene
    pipeline = LanePipeline(_config("jpeg"), True, SRLANE_TARGETS)
    draws = [draw for _, draw, _ in STEPS]
    expected, got, pairs = _worker_and_device(pipeline, view, lanes, draws)
    report = []
    for (name, _, exact), want, have, (worker, device) in zip(
        STEPS, expected, got, pairs, strict=True
    ):
        mean, p999 = _differences(want, have)
        report.append(f"{name}: mean {mean:.4f}, p99.9 {p999:.0f}")
        assert mean <= 1.0 and p999 <= 8, report[-1]
        if exact:
            np.testing.assert_array_equal(have, want, err_msg=name)
        assert not np.array_equal(want, view), f"{name}: the step changed nothing"
        _same_targets(worker, device)
    print("\n".join(report))


@pytest.mark.parametrize("third_op", ["jpeg", "coarse_dropout"])
def test_whole_chain_on_random_draws_matches_opencv(scene, third_op):
    """24 draws of the reference recipe (every step fires in some), augmented as one batch."""
    view, lanes = scene
    pipeline = LanePipeline(_config(third_op), True, SRLANE_TARGETS)
    draws = [pipeline.draw(np.random.default_rng([21, i])) for i in range(24)]
    fired = {d.blur_or_noise[0] for d in draws if d.blur_or_noise}
    assert fired == {"motion_blur", "median_blur", third_op}
    expected, got, pairs = _worker_and_device(pipeline, view, lanes, draws)
    means = []
    for want, have, (worker, device) in zip(expected, got, pairs, strict=True):
        mean, p999 = _differences(want, have)
        assert mean <= 1.0 and p999 <= 8, (mean, p999, worker.draw)
        means.append(mean)
        _same_targets(worker, device)
    all_diff = np.abs(np.stack(expected).astype(np.int16) - np.stack(got).astype(np.int16))
    print(f"\nchain ({third_op}): mean {all_diff.mean():.4f}, max {all_diff.max()}")
    assert all_diff.mean() < 0.1


def test_wrong_transform_would_fail_the_tolerance(scene):
    """The checks above can fail: a warp off by one pixel is far outside the tolerance."""
    view, lanes = scene
    pipeline = LanePipeline(_config("jpeg"), True, SRLANE_TARGETS)
    draw = dataclasses.replace(NONE, affine=(13.2, -7.7, 6.1, 1.13, -4.2))
    shifted = dataclasses.replace(draw, affine=(14.2, -7.7, 6.1, 1.13, -4.2))
    expected, _, _ = _worker_and_device(pipeline, view, lanes, [draw])
    _, got, _ = _worker_and_device(pipeline, view, lanes, [shifted])
    mean, p999 = _differences(expected[0], got[0])
    assert mean > 1.0 or p999 > 8
