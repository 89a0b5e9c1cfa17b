"""CLRNet targets: the keys are the model's training arguments, imgaug-style clipping, slots and
invalid rows, the drawn segmentation mask, 16 lanes. (Numbers against the reference:
``test_clrnet_fidelity.py::test_targets``.)"""

from __future__ import annotations

import inspect

import cv2
import numpy as np

from src.models.clrnet import CLRNet, lane_targets
from src.models.clrnet.targets import clip_like_imgaug

RIGHT, BOTTOM = np.float32(800 - 1e-3), np.float32(320 - 1e-3)


def test_keys_are_the_training_forward_arguments() -> None:
    targets = lane_targets([[(100.0, 300.0), (200.0, 100.0)]])
    arguments = set(inspect.signature(CLRNet.forward).parameters) - {"self", "img"}
    assert set(targets) == arguments == {"gt_lane", "seg"}
    assert targets["gt_lane"].shape == (4, 78) and targets["gt_lane"].dtype == np.float32
    assert targets["seg"].shape == (320, 800) and targets["seg"].dtype == np.uint8


def test_clipping_follows_imgaug() -> None:
    inside = np.array([[0.0, 0.0], [799.9, 319.9]])
    assert len(clip_like_imgaug(inside, 800, 320)) == 1  # 0 is inside, W - 0.1 too
    # x = W is outside: the last segment is cut at W - 1e-3 (as a float32 coordinate)
    (piece,) = clip_like_imgaug(np.array([[400.0, 300.0], [800.0, 100.0]]), 800, 320)
    assert piece.dtype == np.float32 and piece[-1, 0] == RIGHT
    np.testing.assert_allclose(piece[-1, 1], 300 - 200 * (RIGHT / 400 - 1), atol=1e-3)
    # leaving and re-entering: two pieces, in order
    pieces = clip_like_imgaug(np.array([[100.0, 300.0], [900.0, 200.0], [700.0, 100.0]]), 800, 320)
    assert [len(p) for p in pieces] == [2, 2]
    assert pieces[0][0, 0] == 100 and pieces[1][-1, 0] == 700
    # crossing the bottom: the new end is on H - 1e-3
    (piece,) = clip_like_imgaug(np.array([[300.0, 360.0], [400.0, 140.0]]), 800, 320)
    assert piece[0, 1] == BOTTOM
    assert clip_like_imgaug(np.array([[-5.0, -5.0], [-1.0, 400.0]]), 800, 320) == []
    assert len(clip_like_imgaug(np.array([[5.0, 5.0]]), 800, 320)) == 1


def test_slots_close_up_and_failed_lanes_leave_invalid_rows() -> None:
    lanes = [
        [(400.0, 200.0)],  # one point: dropped, the next lane takes slot 0
        [(100.0, 319.0), (200.0, 100.0)],
        [(600.0, 101.6), (602.0, 102.9)],  # no sample row in its span: slot 1 stays invalid
        [(650.0, 300.0), (690.0, 200.0)],
    ]
    gt_lane = lane_targets(lanes)["gt_lane"]
    assert gt_lane[:, :2].tolist() == [[0, 1], [1, 0], [0, 1], [1, 0]]
    assert np.all(gt_lane[1, 2:] == -1e5) and np.all(gt_lane[3, 2:] == -1e5)
    row = gt_lane[0]
    assert row[2] == 0  # starts at the bottom row (sample y 320 is extrapolated, inside)
    np.testing.assert_allclose(row[3], 100 - 1 * 100 / 219, atol=1e-3)  # x at y = 320
    assert row[5] == (320 - 100) // (320 / 71) + 1  # samples inside the lane's span
    assert 0 < row[4] < 0.5  # leaning right going up: under 90 degrees (theta in units of pi)


def test_seg_mask_draws_input_lanes_with_their_index() -> None:
    lanes = [
        [(100.5, 300.9), (100.5, 100.0)],
        [(5.0, 5.0)],  # one point: keeps its index, draws nothing
        [(700.0, 300.0), (600.0, 100.0)],
        [(400.0, 300.0), (400.0, 100.0)],
        [(300.0, 300.0), (300.0, 100.0)],  # beyond max_lanes: not drawn
    ]
    seg = lane_targets(lanes)["seg"]
    assert set(np.unique(seg).tolist()) == {0, 1, 3, 4}
    # thickness 8 around x = 100 (truncated from 100.5): columns 96..104
    assert np.flatnonzero(seg[200] == 1).tolist() == list(range(96, 105))
    assert seg[200, 300] == 0


def test_seg_mask_equals_lines_between_consecutive_points() -> None:
    rng = np.random.default_rng(0)
    lanes = [rng.uniform([-100, -50], [900, 370], (int(rng.integers(2, 30)), 2)) for _ in range(4)]
    expected = np.zeros((320, 800), np.uint8)
    for k, lane in enumerate(lanes):
        points = lane.astype(np.int32)
        for p, q in zip(points[:-1], points[1:], strict=True):
            cv2.line(expected, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), k + 1, 8)
    np.testing.assert_array_equal(lane_targets(lanes)["seg"], expected)


def test_sixteen_lanes() -> None:
    lanes = [[(40.0 + 48.0 * k, 319.0), (300.0 + 13.0 * k, 160.0)] for k in range(16)]
    targets = lane_targets(lanes, max_lanes=16)
    assert targets["gt_lane"].shape == (16, 78)
    assert np.all(targets["gt_lane"][:, 1] == 1)
    assert set(np.unique(targets["seg"]).tolist()) == set(range(17))
