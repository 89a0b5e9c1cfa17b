"""Bounding-box drawing and IoU give exactly the full-mask pixels of the reference recipe."""

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from src.metrics.raster import draw_lane, empty_mask, intersection, iou_matrix

H, W, WIDTH = 590, 1640, 30


def full_mask(points: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """The reference recipe: one cv2.line per segment on a full-size mask."""
    img = np.zeros((H, W), dtype=np.uint8)
    pts = points.astype(np.int32)
    for p1, p2 in zip(pts[:-1], pts[1:], strict=True):
        cv2.line(img, (int(p1[0]), int(p1[1])), (int(p2[0]), int(p2[1])), 255, thickness=width)
    return img


def placed(mask) -> np.ndarray:
    img = np.zeros((H, W), dtype=np.uint8)
    if mask.area:
        img[mask.y0 : mask.y1, mask.x0 : mask.x1] = mask.mask
    return img


coord_x = st.one_of(
    st.integers(-400, W + 400),
    st.sampled_from([-16, -15, -14, -1, 0, 1, 14, 15, 16, W - 16, W - 1, W, W + 15, W + 16]),
    st.integers(-(1 << 21), 1 << 21),
)
coord_y = st.one_of(
    st.integers(-400, H + 400),
    st.sampled_from([-16, -15, -1, 0, 1, 15, 16, H - 16, H - 1, H, H + 15, H + 16]),
)
lanes = st.lists(st.tuples(coord_x, coord_y), min_size=2, max_size=25).map(
    lambda pts: np.array(pts, dtype=np.int64)
)


@settings(max_examples=120, deadline=None)
@given(lanes, st.sampled_from([1, 2, 15, 30]))
def test_box_drawing_equals_full_mask(points, width):
    mask = draw_lane(points, (H, W), width)
    full = full_mask(points, width)
    assert np.array_equal(placed(mask), full)
    assert mask.area == np.count_nonzero(full)


@settings(max_examples=60, deadline=None)
@given(lanes, lanes)
def test_iou_equals_full_mask_iou(a, b):
    ma, mb = draw_lane(a, (H, W), WIDTH), draw_lane(b, (H, W), WIDTH)
    fa, fb = full_mask(a) > 0, full_mask(b) > 0
    assert intersection(ma, mb) == np.count_nonzero(fa & fb)
    union = np.count_nonzero(fa | fb)
    expected = np.count_nonzero(fa & fb) / union if union else 0.0
    assert iou_matrix([ma], [mb])[0, 0] == expected


def test_lane_outside_the_image_has_no_pixels():
    mask = draw_lane(np.array([[-100, -100], [-60, -200]]), (H, W), WIDTH)
    assert mask.area == 0
    assert iou_matrix([mask], [mask])[0, 0] == 0.0
    assert np.isnan(iou_matrix([mask], [mask], empty_union=np.nan)[0, 0])


def test_invalid_mask_has_zero_iou():
    lane = draw_lane(np.array([[100, 0], [100, 500]]), (H, W), WIDTH)
    assert iou_matrix([empty_mask(valid=False)], [lane]).tolist() == [[0.0]]
    assert iou_matrix([lane], [lane]).tolist() == [[1.0]]
