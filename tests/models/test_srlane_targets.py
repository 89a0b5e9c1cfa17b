"""Training targets for hand-made lanes (gt_lane rows and gt_angle maps)."""

from __future__ import annotations

import numpy as np
import pytest

from src.models.srlane import lane_targets

INVALID = -1e5
SAMPLE_YS = np.arange(320, -1, -320 / 71)  # the 72 rows, bottom -> top


def vertical(x: float, top: float = 0.0, bottom: float = 320.0) -> list[tuple[float, float]]:
    return [(x, bottom), (x, (top + bottom) / 2), (x, top)]


def test_vertical_lane_row_and_angles() -> None:
    gt_lane, gt_angle = lane_targets([vertical(400.0)])
    assert gt_lane.shape == (4, 76) and gt_lane.dtype == np.float32
    # the top sample row is y = -1.6e-12 (float steps of 320/71): above the lane
    np.testing.assert_array_equal(gt_lane[0, :4], [0, 1, 0, 71])
    np.testing.assert_allclose(gt_lane[0, 4:75], 400.0)
    assert gt_lane[0, 75] == INVALID
    for row in gt_lane[1:]:
        assert row[0] == 1 and row[1] == 0 and (row[2:] == INVALID).all()
    for stride, angle in zip((8, 16, 32), gt_angle, strict=True):
        assert angle.shape == (320 // stride, 800 // stride)
        hit = np.argwhere(angle > 0)
        assert set(hit[:, 1]) == {400 // stride}  # one column
        np.testing.assert_allclose(angle[angle > 0], 0.5, atol=1e-5)  # vertical = 0.5


def test_lane_above_its_annotation_is_invalid_and_below_is_extrapolated() -> None:
    # annotated from y=200 up to y=100, slope dx/dy = -1 (leans right going up)
    lane = [(300.0, 200.0), (350.0, 150.0), (400.0, 100.0)]
    gt_lane, _ = lane_targets([lane])
    xs = gt_lane[0, 4:]
    above = SAMPLE_YS < 100
    assert (xs[above] == INVALID).all()
    below = SAMPLE_YS > 200
    np.testing.assert_allclose(xs[below], 300.0 + (200.0 - SAMPLE_YS[below]), rtol=1e-5)
    inside = ~above
    assert gt_lane[0, 3] == inside.sum() and gt_lane[0, 2] == 0


def test_near_horizontal_lane_is_dropped() -> None:
    flat = [(100.0, 200.0), (700.0, 240.0)]  # atan(40 / 600) = 3.8 degrees <= 5
    gt_lane, gt_angle = lane_targets([flat])
    assert (gt_lane[:, 1] == 0).all()
    assert all((a == 0).all() for a in gt_angle)
    steeper = [(100.0, 200.0), (700.0, 260.0)]  # 5.7 degrees: kept
    assert lane_targets([steeper])[0][0, 1] == 1


def test_more_lanes_than_max_lanes() -> None:
    lanes = [vertical(50.0 + 120.0 * i) for i in range(6)]
    gt_lane, gt_angle = lane_targets(lanes, max_lanes=4)
    assert gt_lane.shape == (4, 76)
    np.testing.assert_allclose(gt_lane[:, 4], [50, 170, 290, 410])  # the first four, in order
    # the angle maps are drawn from every kept lane (the reference's behaviour)
    assert (gt_angle[2][:, int(650 / 32)] > 0).any()
    assert (gt_angle[2][:, int(530 / 32)] > 0).any()


def test_points_off_the_image() -> None:
    # crosses x = 0: samples with x < 0 count as outside (start), the rest inside (length)
    lane = [(-100.0, 320.0), (100.0, 120.0), (200.0, 20.0)]
    gt_lane, _ = lane_targets([lane])
    xs = gt_lane[0, 4:]
    valid = xs > INVALID
    outside = ((xs < 0) | (xs >= 800)) & valid
    assert gt_lane[0, 2] == outside.sum() > 0
    assert gt_lane[0, 3] == (valid & ~outside).sum()
    assert xs[0] == pytest.approx(-100.0)  # kept in pixels, not clipped
    # A lane entirely outside the image leaves an invalid row at its index.
    gt_lane, _ = lane_targets([vertical(-50.0), vertical(400.0)])
    assert gt_lane[0, 1] == 0 and gt_lane[1, 1] == 1


def test_one_point_lanes_are_dropped() -> None:
    gt_lane, gt_angle = lane_targets([[(400.0, 300.0)], [(400.0, 200.0), (400.0, 200.0)]])
    assert (gt_lane[:, 1] == 0).all()
    assert all((a == 0).all() for a in gt_angle)


def test_unsorted_points_give_the_same_targets() -> None:
    lane = [(300.0, 300.0), (330.0, 220.0), (380.0, 140.0), (450.0, 60.0)]
    rng = np.random.default_rng(0)
    shuffled = [lane[i] for i in rng.permutation(len(lane))]
    expected = lane_targets([lane])
    got = lane_targets([shuffled])
    np.testing.assert_array_equal(got[0], expected[0])
    for a, b in zip(got[1], expected[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_input_size() -> None:
    gt_lane, gt_angle = lane_targets([vertical(100.0, bottom=128.0)], img_w=320, img_h=128)
    assert [a.shape for a in gt_angle] == [(16, 40), (8, 20), (4, 10)]
    assert gt_lane[0, 3] == (gt_lane[0, 4:] == 100.0).sum() >= 71


def test_a_cell_two_lanes_cross_keeps_the_later_lane() -> None:
    # Both lanes pass through x = 400 at y = 160; the reference draws lane by lane, so the
    # second lane's angle is the one left in the shared cell.
    first = [(300.0, 320.0), (400.0, 160.0), (500.0, 0.0)]
    second = [(500.0, 320.0), (400.0, 160.0), (300.0, 0.0)]
    for lanes in ([first, second], [second, first]):
        _, gt_angle = lane_targets(lanes)
        _, alone = lane_targets(lanes[1:])
        cell = gt_angle[0][160 // 8, 400 // 8]
        assert cell > 0 and cell == alone[0][160 // 8, 400 // 8]
