"""Affine matrices and polyline clipping used by the lane pipeline."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from src.data.geometry import (
    affine_matrix,
    clip_polyline,
    crop_resize_matrix,
    hflip_matrix,
    opencv_matrix,
    transform_points,
)

W, H = 80.0, 40.0


def test_crop_resize_maps_the_crop_onto_the_output():
    matrix = crop_resize_matrix(1640, 590, 270, 800, 320)
    corners = np.array([[0, 270], [1640, 590], [820, 430]], dtype=float)
    np.testing.assert_allclose(transform_points(corners, matrix), [[0, 0], [800, 320], [400, 160]])


def test_hflip_is_an_involution_and_mirrors():
    flip = hflip_matrix(800)
    np.testing.assert_allclose(flip @ flip, np.eye(3))
    np.testing.assert_allclose(transform_points(np.array([[100.0, 7.0]]), flip), [[700.0, 7.0]])


def test_affine_identity_and_centre():
    np.testing.assert_allclose(affine_matrix(800, 320, 0, 0, 0, 1, 0), np.eye(3), atol=1e-12)
    rotated = affine_matrix(800, 320, 5, -3, 10, 1.1, 7)
    # The centre only moves by the translation.
    np.testing.assert_allclose(transform_points(np.array([[400.0, 160.0]]), rotated), [[405, 157]])


def test_opencv_matrix_moves_pixels_where_points_go():
    """A bright dot warped by cv2 lands where transform_points sends its centre."""
    image = np.zeros((320, 800), dtype=np.float32)
    centre = np.array([[300.5, 120.5]])  # continuous centre of pixel (300, 120)
    image[120, 300] = 1.0
    image = cv2.GaussianBlur(image, (0, 0), 2.0)
    matrix = affine_matrix(800, 320, 17.0, -9.0, 8.0, 1.15, -6.0) @ hflip_matrix(800)
    warped = cv2.warpAffine(image, opencv_matrix(matrix), (800, 320), flags=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:320, 0:800]
    total = warped.sum()
    centroid = np.array([(xs * warped).sum() / total + 0.5, (ys * warped).sum() / total + 0.5])
    np.testing.assert_allclose(centroid, transform_points(centre, matrix)[0], atol=0.05)


def test_clip_examples():
    inside = np.array([[1.0, 1.0], [5.0, 5.0]])
    assert len(clip_polyline(inside, W, H)) == 1
    np.testing.assert_array_equal(clip_polyline(inside, W, H)[0], inside)
    # Leaves through the bottom: cut at y = H.
    (piece,) = clip_polyline(np.array([[10.0, 30.0], [10.0, 50.0]]), W, H)
    np.testing.assert_allclose(piece, [[10, 30], [10, 40]])
    # Leaves and re-enters: two pieces.
    pieces = clip_polyline(np.array([[10.0, 10], [90, 10], [90, 20], [10, 20]]), W, H)
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces[0], [[10, 10], [80, 10]])
    np.testing.assert_allclose(pieces[1], [[80, 20], [10, 20]])
    # Entirely outside.
    assert clip_polyline(np.array([[-5.0, -5.0], [-1.0, 50.0]]), W, H) == []


def _segment_length_inside(a: np.ndarray, b: np.ndarray, samples: int = 400) -> float:
    t = (np.arange(samples) + 0.5) / samples
    points = a + t[:, None] * (b - a)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= W) & (points[:, 1] >= 0) & (points[:, 1] <= H)
    return float(inside.mean() * np.linalg.norm(b - a))


def _on_polyline(point: np.ndarray, polyline: np.ndarray) -> float:
    a, b = polyline[:-1], polyline[1:]
    d = b - a
    length2 = np.maximum((d * d).sum(1), 1e-12)
    t = np.clip(((point - a) * d).sum(1) / length2, 0, 1)
    return float(np.min(np.linalg.norm(a + t[:, None] * d - point, axis=1)))


coords = st.tuples(
    st.floats(-40, 120, allow_subnormal=False), st.floats(-30, 70, allow_subnormal=False)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(coords, min_size=2, max_size=12))
def test_clip_properties(points):
    polyline = np.array(points, dtype=float)
    pieces = clip_polyline(polyline, W, H)
    total = 0.0
    for piece in pieces:
        assert piece.ndim == 2 and piece.shape[1] == 2 and len(piece) >= 2
        assert (piece[:, 0] >= -1e-9).all() and (piece[:, 0] <= W + 1e-9).all()
        assert (piece[:, 1] >= -1e-9).all() and (piece[:, 1] <= H + 1e-9).all()
        for point in piece:
            assert _on_polyline(point, polyline) < 1e-6
        total += float(np.linalg.norm(np.diff(piece, axis=0), axis=1).sum())
    expected = sum(
        _segment_length_inside(a, b) for a, b in zip(polyline[:-1], polyline[1:], strict=True)
    )
    # Dense sampling resolves each segment to 1/400 of its length.
    tolerance = 0.01 * float(np.linalg.norm(np.diff(polyline, axis=0), axis=1).sum()) + 1e-6
    assert abs(total - expected) <= tolerance


def test_clip_output_unchanged_bit_for_bit():
    """The training lanes (hence the targets) do not move: the pieces of 3,000 seeded polylines
    (free, on the border and parallel to it, lane-like) hash to what the all-numpy version of
    clip_polyline gave before it clipped only the crossing segments (December 2026)."""
    rng = np.random.default_rng(2026)
    digest = hashlib.sha256()
    for k in range(3000):
        n = int(rng.integers(1, 30))
        if k % 3 == 0:
            points = rng.uniform(-200, 1000, (n, 2))
        elif k % 3 == 1:
            points = np.round(rng.uniform(-2, 4, (n, 2))) * 200
        else:
            xs = rng.uniform(-100, 900) + np.cumsum(rng.normal(0, 20, n))
            points = np.stack([xs, np.linspace(400, -50, n)], 1)
        for piece in clip_polyline(points, 800, 320):
            digest.update(np.ascontiguousarray(piece + 0.0).tobytes() + b"|")  # +0.0: -0 is 0
        digest.update(b"#")
    assert digest.hexdigest() == (
        "8d25aac7e34aa5088b5ff0d2c3560c7dc164cc849c3f381b0d9d7fade22ae610"
    )
