"""CLRNet decoding: the lane NMS against the reference kernel on crafted rows, the numpy decoder
equal to the torch one, and the reference's decoding rules (threshold, start/length rounding,
extension below the start, x > 1 kept, gaps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.clrnet.decode import decode_predictions
from src.models.clrnet.decode_np import (
    decode_lanes,
    lane_nms,
    lane_overlaps,
    lane_points,
    nms_rows,
    prior_ys,
)
from tests.models.clrnet_golden import GOLDEN, nms_cases

P = 72
ARGS = {"img_w": 800, "conf_threshold": 0.4, "nms_thres": 50.0, "max_lanes": 4}


def kernel_nms(rows: np.ndarray, scores: np.ndarray, threshold: float, top_k: int) -> list:
    """Kept row indices, best first, composed as decode_lanes does it."""
    order = np.argsort(-scores, kind="stable")
    return order[lane_nms(rows[order], threshold, top_k)].tolist()


def all_pairs_nms(rows: np.ndarray, scores: np.ndarray, threshold: float, top_k: int) -> list:
    """The kernel's way: the full pairwise matrix first, then the greedy pass."""
    order = np.argsort(-scores, kind="stable")
    overlaps = lane_overlaps(rows[order], rows[order], threshold)
    suppressed, keep = np.zeros(len(rows), dtype=bool), []
    for i in range(len(rows)):
        if not suppressed[i] and len(keep) < top_k:
            keep.append(i)
            suppressed |= overlaps[i] & (np.arange(len(rows)) > i)
    return order[keep].tolist()


def test_nms_matches_the_reference_kernel_on_crafted_rows() -> None:
    expected = np.load(GOLDEN)["nms_keep"]
    cases = nms_cases()
    assert len(cases) == len(expected)
    for index, (rows, scores, threshold, top_k) in enumerate(cases):
        want = [k for k in expected[index].tolist() if k >= 0]
        assert kernel_nms(rows, scores, threshold, top_k) == want, index
        assert all_pairs_nms(rows, scores, threshold, top_k) == want, index


@pytest.mark.parametrize("seed", range(3))
def test_nms_on_kept_rows_equals_the_all_pairs_pass(seed: int) -> None:
    preds = random_predictions(seed, batch=1)[0]
    rows, scores = nms_rows(preds, 800), np.random.default_rng(seed).random(len(preds))
    for top_k in (4, 16, 192):
        kept = kernel_nms(rows, scores, 50.0, top_k)
        assert kept == all_pairs_nms(rows, scores, 50.0, top_k) and len(kept) >= min(top_k, 5)


def test_nms_rows_layout() -> None:
    prediction = np.arange(6 + P, dtype=np.float32)[None] / 100
    rows = nms_rows(prediction, img_w=800)
    assert rows.shape == (1, 5 + P)
    np.testing.assert_array_equal(rows[0, :4], prediction[0, :4])  # logits, start_y, start_x
    assert rows[0, 4] == np.float32(0.05) * np.float32(71)  # length in rows; theta dropped
    np.testing.assert_array_equal(rows[0, 5:], prediction[0, 6:] * np.float32(799))


def random_predictions(seed: int, batch: int = 3, n: int = 192) -> np.ndarray:
    """Predictions with many candidates and near-duplicate lanes (so NMS has work)."""
    rng = np.random.default_rng(seed)
    preds = np.zeros((batch, n, 6 + P), dtype=np.float32)
    preds[..., :2] = rng.normal(0, 2, (batch, n, 2))
    preds[..., 2] = rng.uniform(-0.05, 0.6, (batch, n))
    preds[..., 3] = rng.uniform(0, 1, (batch, n))
    preds[..., 4] = rng.uniform(0.1, 0.9, (batch, n))
    preds[..., 5] = rng.uniform(-0.05, 1.0, (batch, n))
    base = rng.choice([100, 130, 400, 420, 700], size=(batch, n)) + rng.normal(0, 15, (batch, n))
    xs = base[..., None] + rng.normal(0, 4, (batch, n))[..., None] * np.arange(P)
    preds[..., 6:] = xs / 799
    return preds


@pytest.mark.parametrize("seed", range(4))
def test_numpy_and_torch_decoders_agree(seed: int) -> None:
    preds = random_predictions(seed)
    cuts, oris = [270, 160, 0], [590, 720, 320]
    torch_lanes = decode_predictions(torch.from_numpy(preds), cuts, oris, **ARGS)
    np_lanes = decode_lanes(preds, cuts, oris, **ARGS)
    assert [len(i) for i in torch_lanes] == [len(i) for i in np_lanes]
    assert sum(len(i) for i in np_lanes) >= 6  # the comparison is not vacuous
    for t_image, n_image in zip(torch_lanes, np_lanes, strict=True):
        for lane, (points, score) in zip(t_image, n_image, strict=True):
            assert np.array_equal(lane.points, points) and lane.score == score


def test_the_module_imports_only_numpy() -> None:
    path = Path(__file__).resolve().parents[2] / "src" / "models" / "clrnet" / "decode_np.py"
    code = (
        "import sys, importlib.util\n"
        "for name in ('torch', 'hydra', 'omegaconf', 'src', 'cv2', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        f"spec = importlib.util.spec_from_file_location('decode_np', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "zeros = module.np.zeros((1, 192, 78), 'float32')\n"
        "print(len(module.decode_lanes(zeros, [0], [1], 800)[0]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def prediction(xs: np.ndarray | float, start_y: float, length: float, logit: float = 3.0):
    row = np.zeros(6 + P, dtype=np.float32)
    row[1], row[2], row[5] = logit, start_y, length
    row[6:] = np.broadcast_to(np.float32(xs), (P,))
    return row


YS = prior_ys(P)


def test_points_start_and_length_round_like_the_reference() -> None:
    # start: Python's round of start_y * 71 in float64 (2.5 / 71 -> 2.50000009 -> 3; a float32
    # product is exactly 2.5 and would round to 2); length: torch.round (half to even) of the
    # float32 product (12.5 / 71 * 71 is exactly 12.5 in float32 -> 12, not 13).
    row = prediction(0.5, start_y=np.float32(2.5 / 71), length=np.float32(12.5 / 71))
    points = lane_points(row, YS, cut_height=0, ori_height=320)
    assert len(points) == 12 + 3  # rows 3..14, plus rows 0..2 below the start (inside)
    np.testing.assert_array_equal(points[:, 1], YS[14::-1])  # top -> bottom
    assert np.all(points[:, 0] == np.float32(0.5))


def test_points_below_start_stop_at_the_first_outside_point() -> None:
    xs = np.full(P, 0.5, dtype=np.float32)
    xs[3] = 1.2  # below the start row 5: rows 4 (inside) and 3 (outside) -> 4 kept, 0..3 not
    points = lane_points(prediction(xs, start_y=5 / 71, length=10 / 71), YS, 0, 320)
    assert len(points) == 11  # row 4 + rows 5..14
    assert points[-1, 1] == YS[4]


def test_points_keep_x_above_1_and_drop_negative_x_with_a_gap() -> None:
    xs = np.linspace(0.9, 1.3, P).astype(np.float32)  # leaves the image on the right
    xs[20] = -0.1  # a point left of the image inside the span
    points = lane_points(prediction(xs, start_y=0.0, length=40 / 71), YS, 0, 320)
    assert len(points) == 39  # rows 0..39 without row 20
    assert points[:, 0].max() > 1.0
    assert YS[20] not in points[:, 1]


def test_points_map_through_the_cut() -> None:
    # length counts rows: 72 / 71 of the strips reach the top row
    points = lane_points(prediction(0.5, start_y=0.0, length=72 / 71), YS, 270, 590)
    np.testing.assert_allclose(points[-1, 1], 1.0)  # the bottom row is the image bottom
    np.testing.assert_allclose(points[0, 1], 270 / 590)  # the top row is the cut


def test_threshold_and_empty_images() -> None:
    below = float(np.log(0.399 / 0.601))
    preds = np.stack([prediction(0.5, 0.0, 0.5, logit=below)])[None]
    assert decode_lanes(preds, [0], [320], **ARGS) == [[]]
    above = float(np.log(0.401 / 0.599))
    lanes = decode_lanes(
        np.stack([prediction(0.5, 0.0, 0.5, logit=above)])[None], [0], [320], **ARGS
    )
    assert len(lanes[0]) == 1 and lanes[0][0][1] == pytest.approx(0.401)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="6 \\+ P"):
        decode_lanes(np.zeros((1, 4, 5), np.float32), [0], [1], 800)
    with pytest.raises(ValueError, match="one cut_height"):
        decode_lanes(np.zeros((2, 4, 78), np.float32), [0], [1], 800)
