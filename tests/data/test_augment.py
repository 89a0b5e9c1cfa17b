"""The SRLane augmentation: draws, photometric ops, and image/lane consistency."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from src.data import DatasetError, build_dataset
from src.data.augment import (
    AugmentDraw,
    add_hue_saturation,
    adjust_brightness,
    apply_photometric,
    coarse_dropout,
    draw_augmentation,
    motion_blur,
)
from src.data.config import AugmentConfig, DatasetConfig
from src.data.pipeline import LanePipeline
from tests.data.lane_trees import (
    SRLANE_TARGETS,
    culane_lanes,
    lane_image,
    tusimple_config,
    write_tusimple_tree,
)


def _culane_cfg(**augment) -> DatasetConfig:
    cfg = DatasetConfig(
        name="culane", root="/unused", ori_w=1640, ori_h=590, cut_height=270, max_lanes=4
    )
    cfg.augment = dataclasses.replace(cfg.augment, **augment)
    return cfg


def test_draw_is_a_function_of_the_generator_seed():
    cfg = AugmentConfig()
    a = draw_augmentation(np.random.default_rng([3, 1, 4]), cfg, 800, 320)
    b = draw_augmentation(np.random.default_rng([3, 1, 4]), cfg, 800, 320)
    c = draw_augmentation(np.random.default_rng([3, 1, 5]), cfg, 800, 320)
    assert a == b and a != c


def test_step_frequencies_follow_the_probabilities():
    cfg = AugmentConfig()
    draws = [draw_augmentation(np.random.default_rng([0, i]), cfg, 800, 320) for i in range(4000)]
    rates = {
        "hflip": np.mean([d.hflip for d in draws]),
        "channel_shuffle": np.mean([d.channel_order is not None for d in draws]),
        "brightness": np.mean([d.brightness is not None for d in draws]),
        "hue_saturation": np.mean([d.hue_saturation is not None for d in draws]),
        "blur": np.mean([d.blur_or_noise is not None for d in draws]),
        "affine": np.mean([d.affine is not None for d in draws]),
    }
    expected = {
        "hflip": 0.5,
        "channel_shuffle": 0.1,
        "brightness": 0.6,
        "hue_saturation": 0.7,
        "blur": 0.2,
        "affine": 0.7,
    }
    for name, rate in rates.items():
        assert abs(rate - expected[name]) < 0.03, (name, rate)
    ops = [d.blur_or_noise[0] for d in draws if d.blur_or_noise is not None]
    assert set(ops) == {"motion_blur", "median_blur", "jpeg"}
    # Parameter ranges.
    for d in draws:
        if d.affine is not None:
            tx, ty, rot, scale, shear = d.affine
            assert abs(tx) <= 80 and abs(ty) <= 32 and abs(rot) <= 10
            assert 0.8 <= scale <= 1.2 and abs(shear) <= 10
        if d.brightness is not None:
            assert 0.85 <= d.brightness[1] <= 1.15 and -10 <= d.brightness[2] <= 10
        if d.hue_saturation is not None:
            assert -10 <= d.hue_saturation <= 10
    qualities = [op[1] for op in (d.blur_or_noise for d in draws) if op and op[0] == "jpeg"]
    assert min(qualities) >= 7 and max(qualities) <= 17
    tusimple = dataclasses.replace(cfg, third_op="coarse_dropout")
    ops = {
        d.blur_or_noise[0]
        for d in (
            draw_augmentation(np.random.default_rng([1, i]), tusimple, 800, 320) for i in range(300)
        )
        if d.blur_or_noise is not None
    }
    assert ops == {"motion_blur", "median_blur", "coarse_dropout"}


def test_blur_without_a_third_choice():
    """third_op=none: the blur step picks one of the two blurs, half each; the draw consumes the
    same values, so the other steps of a sample are those of the three-choice list."""
    cfg = AugmentConfig(third_op="none", blur_p=1.0)
    draws = [draw_augmentation(np.random.default_rng([0, i]), cfg, 800, 320) for i in range(2000)]
    kinds = [d.blur_or_noise[0] for d in draws]
    assert set(kinds) == {"motion_blur", "median_blur"}
    assert abs(kinds.count("motion_blur") / len(kinds) - 0.5) < 0.04
    three = AugmentConfig(blur_p=1.0)
    for i, draw in enumerate(draws[:50]):
        other = draw_augmentation(np.random.default_rng([0, i]), three, 800, 320)
        assert dataclasses.replace(draw, blur_or_noise=None) == dataclasses.replace(
            other, blur_or_noise=None
        )


def test_disabled_and_certain_steps():
    never = AugmentConfig(
        hflip_p=0, channel_shuffle_p=0, brightness_p=0, hue_saturation_p=0, blur_p=0, affine_p=0
    )
    always = AugmentConfig(
        hflip_p=1, channel_shuffle_p=1, brightness_p=1, hue_saturation_p=1, blur_p=1, affine_p=1
    )
    for i in range(20):
        d = draw_augmentation(np.random.default_rng(i), never, 800, 320)
        assert d == AugmentDraw(False, None, None, None, None, None)
        d = draw_augmentation(np.random.default_rng(i), always, 800, 320)
        assert d.hflip and None not in (
            d.channel_order,
            d.brightness,
            d.hue_saturation,
            d.blur_or_noise,
            d.affine,
        )


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 220, (8, 20, 3), dtype=np.uint8)
    return cv2.resize(small, (800, 320), interpolation=cv2.INTER_CUBIC)


def test_photometric_ops():
    image = _image()
    # Brightness: multiply/add raise the brightness channel in every colour space.
    for space in ("YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV"):
        brighter = adjust_brightness(image, space, 1.1, 8.0, False)
        assert brighter.mean() > image.mean() + 5, space
        same = adjust_brightness(image, space, 1.0, 0.0, True)
        assert np.abs(same.astype(int) - image).mean() < 1.5, space
    # Hue/saturation 0 is (nearly) the identity; +10 raises saturation.
    assert np.abs(add_hue_saturation(image, 0).astype(int) - image).mean() < 1.5
    sat = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[:, :, 1].astype(int)
    assert (
        cv2.cvtColor(add_hue_saturation(image, 10), cv2.COLOR_RGB2HSV)[:, :, 1] - sat
    ).mean() > 5
    # Motion blur keeps the mean, smooths edges.
    blurred = motion_blur(image, 5, 30.0, 0.3)
    assert abs(blurred.mean() - image.mean()) < 1.0
    assert (
        np.abs(np.diff(blurred.astype(int), axis=1)).mean()
        < np.abs(np.diff(image.astype(int), axis=1)).mean()
    )
    # Coarse dropout blacks out about the requested fraction, in blocks.
    dropped = coarse_dropout(image, 0.3, 0.05, seed=1)
    black = (dropped == 0).all(axis=2).mean()
    assert 0.15 < black < 0.45
    # Channel order.
    draw = AugmentDraw(False, (2, 1, 0), None, None, None, None)
    np.testing.assert_array_equal(apply_photometric(image, draw), image[:, :, ::-1])


def _bright_fraction(image: np.ndarray, lanes: list[np.ndarray]) -> tuple[float, int]:
    """Fraction of points along the lanes (away from the border) on bright pixels."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    hits = total = 0
    for lane in lanes:
        for a, b in zip(lane[:-1], lane[1:], strict=True):
            n = max(int(np.linalg.norm(b - a)), 1)
            for t in (np.arange(n) + 0.5) / n:
                x, y = a + t * (b - a)
                if 3 <= x < w - 3 and 3 <= y < h - 3:
                    total += 1
                    hits += gray[int(y), int(x)] > 150
    return hits / max(total, 1), total


def test_lanes_stay_under_their_points():
    """Lanes painted into the image lie under the transformed lane points after augmentation
    (flip, affine and all colour/blur/noise steps), for many draws."""
    rng = np.random.default_rng(0)
    # Only points inside the original image: outside it there is no paint to find.
    lanes = [lane[(lane[:, 0] >= 0) & (lane[:, 0] < 1640)] for lane in culane_lanes(rng, 4)]
    image = lane_image(1640, 590, lanes, thickness=11)
    cfg = _culane_cfg()
    pipeline = LanePipeline(cfg, training=True)
    fractions, flips, affines = [], 0, 0
    for i in range(40):
        draw = pipeline.draw(np.random.default_rng([7, i]))
        out = pipeline.process(image, lanes, draw)
        fraction, count = _bright_fraction(out.image, out.lanes)
        assert count > 100
        fractions.append(fraction)
        flips += draw.hflip
        affines += draw.affine is not None
        for lane in out.lanes:  # clipped to the image
            assert (lane >= -1e-9).all() and (lane[:, 0] <= 800 + 1e-9).all()
            assert (lane[:, 1] <= 320 + 1e-9).all()
    assert flips >= 10 and affines >= 20
    # Coarse dropout / JPEG may darken a few points; everything else stays on the paint.
    assert np.median(fractions) > 0.99 and min(fractions) > 0.95


def test_mirrored_lanes_would_not_match():
    """The consistency check above can fail: mirrored points miss the painted lanes."""
    lanes = [np.array([[200.0, 590.0], [500.0, 430.0], [700.0, 280.0]])]
    image = lane_image(1640, 590, lanes, thickness=11)
    pipeline = LanePipeline(_culane_cfg(), training=True)
    draw = AugmentDraw(True, None, None, None, None, None)
    out = pipeline.process(image, lanes, draw)
    mirrored = [np.column_stack((800 - lane[:, 0], lane[:, 1])) for lane in out.lanes]
    assert _bright_fraction(out.image, out.lanes)[0] > 0.97
    assert _bright_fraction(out.image, mirrored)[0] < 0.3


def test_flip_only_mirrors_lanes_exactly():
    lanes = [np.array([[100.0, 590.0], [700.0, 300.0]])]
    pipeline = LanePipeline(_culane_cfg(), training=True)
    plain = pipeline.process(np.zeros((590, 1640, 3), np.uint8), lanes, None).lanes[0]
    flip = AugmentDraw(True, None, None, None, None, None)
    flipped = pipeline.process(np.zeros((590, 1640, 3), np.uint8), lanes, flip).lanes[0]
    np.testing.assert_allclose(flipped[:, 0], 800 - plain[:, 0])
    np.testing.assert_allclose(flipped[:, 1], plain[:, 1])
    np.testing.assert_allclose(plain, [[100 * 800 / 1640, 320], [700 * 800 / 1640, 30 * 320 / 320]])


def test_failed_targets_are_redrawn_from_the_key(tmp_path, monkeypatch):
    write_tusimple_tree(tmp_path, per_file=1)
    dataset = build_dataset(tusimple_config(tmp_path), "train", True, 5, SRLANE_TARGETS)
    real = dataset.pipeline.targets_fn
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("degenerate spline")
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset.pipeline, "targets_fn", flaky)
    item = dataset[(2, 1)]
    expected = dataset.pipeline.draw(np.random.default_rng([5, 2, 1, 1]))
    assert len(calls) == 2 and item["meta"]["augment"] == expected.as_dict()

    def broken(*args, **kwargs):
        return {"gt_lane": np.full((5, 76), np.nan, np.float32), "gt_angle": []}

    monkeypatch.setattr(dataset.pipeline, "targets_fn", broken)
    with pytest.raises(DatasetError, match="targets failed for 10 augmentation draws"):
        dataset[(0, 0)]
