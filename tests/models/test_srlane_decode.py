"""Lane NMS and decoding: overlap rule, greedy order, top-k, threshold, border extension,
cut_height mapping, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.models.srlane.decode import (
    decode_predictions,
    lane_nms,
    lane_overlaps,
    to_nms_rows,
)

P = 72
ROW_YS = np.linspace(1, 0, P)  # normalised y of each row (row 0 = bottom)


def nms_by_score(
    rows: torch.Tensor, scores: torch.Tensor, threshold: float, top_k: int
) -> torch.Tensor:
    """Greedy lane NMS for one image, composed as decode_predictions does it: kept indices,
    best score first, at most ``top_k``."""
    order = scores.argsort(descending=True, stable=True)
    keep = lane_nms(rows[order].cpu().numpy(), threshold, top_k)
    return order[torch.as_tensor(keep, dtype=torch.long, device=order.device)]


def nms_row(x: float, start: float = 0, end: float = 71, slope: float = 0.0) -> torch.Tensor:
    """One lane in the NMS layout: [_, _, start_row, end_row, xs in pixels]."""
    row = torch.zeros(4 + P)
    row[2], row[3] = start, end
    row[4:] = x + slope * torch.arange(P, dtype=torch.float32)
    return row


def test_overlapping_lanes_keep_the_best_score() -> None:
    rows = torch.stack([nms_row(100), nms_row(130), nms_row(400)])
    keep = nms_by_score(rows, torch.tensor([0.6, 0.9, 0.8]), threshold=50, top_k=4)
    assert keep.tolist() == [1, 2]  # lane 0 is 30 px from the better lane 1


def test_the_distance_is_a_strict_mean_over_the_common_rows() -> None:
    # 50 px apart everywhere: mean |dx| = 50 is not < 50 -> both kept
    rows = torch.stack([nms_row(100), nms_row(150)])
    assert lane_overlaps(rows, 50.0)[0, 1].item() is False
    assert lane_overlaps(rows, 50.01)[0, 1].item() is True
    # Far apart on rows 0..9, identical on rows 10..71: only the common rows count.
    a, b = nms_row(100, start=10), nms_row(100, start=0)
    b[4:14] = 700
    assert lane_overlaps(torch.stack([a, b]), 1.0)[0, 1].item() is True


def test_disjoint_row_ranges_never_overlap() -> None:
    rows = torch.stack([nms_row(100, start=0, end=30), nms_row(100, start=31, end=71)])
    keep = nms_by_score(rows, torch.tensor([0.9, 0.8]), threshold=50, top_k=4)
    assert keep.tolist() == [0, 1]
    # one shared row is enough to compare them
    rows[1, 2] = 30
    assert nms_by_score(rows, torch.tensor([0.9, 0.8]), threshold=50, top_k=4).tolist() == [0]


def test_rows_are_rounded_like_the_kernel() -> None:
    # (int)(x + 0.5): 30.4 -> 30 and 30.5 -> 31 (not banker's rounding); a start of -0.7 -> 0
    a = nms_row(100, start=0, end=30.4)
    b = nms_row(100, start=30.5, end=71)
    assert lane_overlaps(torch.stack([a, b]), 50.0)[0, 1].item() is False
    b[2] = 30.49
    assert lane_overlaps(torch.stack([a, b]), 50.0)[0, 1].item() is True
    c = nms_row(100, start=-0.7, end=0.2)  # rows 0..0
    d = nms_row(120, start=0, end=71)
    assert lane_overlaps(torch.stack([c, d]), 21.0)[0, 1].item() is True
    assert lane_overlaps(torch.stack([c, d]), 20.0)[0, 1].item() is False


def test_greedy_suppression_uses_kept_lanes_only() -> None:
    # A-B and B-C overlap, A-C do not: B is removed by A, so C survives.
    rows = torch.stack([nms_row(100), nms_row(140), nms_row(180)])
    keep = nms_by_score(rows, torch.tensor([0.9, 0.8, 0.7]), threshold=50, top_k=4)
    assert keep.tolist() == [0, 2]


def test_top_k_limit() -> None:
    rows = torch.stack([nms_row(100 * i) for i in range(6)])
    scores = torch.tensor([0.5, 0.9, 0.6, 0.8, 0.7, 0.95])
    assert nms_by_score(rows, scores, threshold=50, top_k=3).tolist() == [5, 1, 3]
    assert len(nms_by_score(rows, scores, threshold=50, top_k=10)) == 6


def prediction(
    x: float | np.ndarray,
    score_logit: float = 3.0,
    start_row: int = 0,
    length_rows: int = 72,
) -> torch.Tensor:
    """A prediction row [logits, start_y, length, xs] with xs normalised (rows bottom -> top)."""
    row = torch.zeros(4 + P)
    row[1] = score_logit
    row[2] = start_row / (P - 1)
    row[3] = length_rows / (P - 1)
    row[4:] = torch.as_tensor(np.broadcast_to(x, (P,)).copy(), dtype=torch.float32)
    return row


def decode(rows: list[torch.Tensor], **kwargs: object) -> list:
    defaults = {"cut_heights": [0], "ori_heights": [320], "img_w": 800}
    defaults.update(kwargs)
    return decode_predictions(torch.stack(rows).unsqueeze(0), **defaults)


def test_nothing_above_threshold_gives_no_lanes() -> None:
    # softmax([0, -1])[1] = 0.27 < 0.4
    assert decode([prediction(0.5, score_logit=-1.0), prediction(0.2, score_logit=-2.0)]) == [[]]
    # just above / just below the threshold
    above, below = float(np.log(0.401 / 0.599)), float(np.log(0.399 / 0.601))
    lanes = decode([prediction(0.5, score_logit=above)], conf_threshold=0.4)[0]
    assert len(lanes) == 1 and lanes[0].score == pytest.approx(0.401)
    assert decode([prediction(0.5, score_logit=below)], conf_threshold=0.4) == [[]]


def test_decoded_points_scores_and_order() -> None:
    lanes = decode([prediction(0.25, score_logit=1.0), prediction(0.75, score_logit=2.0)])[0]
    assert [round(lane.score, 4) for lane in lanes] == [0.8808, 0.7311]
    best = lanes[0]
    assert best.points.shape == (72, 2)
    np.testing.assert_allclose(best.points[:, 0], 0.75)
    np.testing.assert_allclose(best.points[:, 1], ROW_YS[::-1], atol=1e-7)  # top -> bottom
    assert best.x_at(np.array([0.5]))[0] == pytest.approx(0.75)


def test_lanes_extend_down_to_the_image_border() -> None:
    # Predicted rows 20..60; below row 20 the lane is a line leaving the image below row 8.
    xs = np.full(P, 0.5)
    xs[:20] = 0.5 - 0.04 * (20 - np.arange(20))  # row 8 -> 0.02, row 7 -> -0.02
    xs[2] = 0.5  # inside again further down: not reached, the extension stops at the border
    lane = decode([prediction(xs, start_row=20, length_rows=41)])[0][0]
    ys = lane.points[:, 1]
    assert ys.max() == pytest.approx(ROW_YS[8])  # lowest point: the last row still inside
    assert ys.min() == pytest.approx(ROW_YS[60])  # highest point: row start + length - 1
    assert len(lane) == 60 - 8 + 1


def test_points_outside_the_image_are_dropped_and_short_lanes_removed() -> None:
    xs = np.linspace(-0.3, 1.3, P)  # inside on the middle rows only
    lane = decode([prediction(xs)])[0][0]
    assert (lane.points[:, 0] >= 0).all() and (lane.points[:, 0] <= 1).all()
    assert len(lane) == int(((xs >= 0) & (xs <= 1)).sum())
    one_point = np.full(P, -1.0)
    one_point[10] = 0.5
    assert decode([prediction(one_point)]) == [[]]


def test_cut_height_maps_back_to_the_original_image() -> None:
    preds = torch.stack([prediction(0.5), prediction(0.5)])
    lanes = decode_predictions(torch.stack([preds, preds]), [270, 160], [590, 720], img_w=800)
    culane, tusimple = lanes[0][0], lanes[1][0]
    # the input's top row (y 0) is the cut line, its bottom row (y 1) the original bottom
    assert culane.points[0, 1] == pytest.approx(270 / 590)
    assert culane.points[-1, 1] == pytest.approx(1.0)
    assert tusimple.points[0, 1] == pytest.approx(160 / 720)
    middle = ROW_YS[35]
    assert tusimple.points[-36, 1] == pytest.approx((middle * 560 + 160) / 720)
    assert len(lanes[0]) == 1  # the duplicate was suppressed


def test_max_lanes_and_nms_threshold_apply_per_image() -> None:
    rows = [prediction(0.1 * i + 0.05, score_logit=1.0 + i) for i in range(8)]  # 80 px apart
    assert len(decode(rows, max_lanes=4)[0]) == 4
    assert len(decode(rows, max_lanes=10)[0]) == 8
    assert len(decode(rows, max_lanes=10, nms_thres=100.0)[0]) == 4  # every other lane


def test_one_metadata_entry_per_image_is_required() -> None:
    with pytest.raises(ValueError, match="one cut_height"):
        decode_predictions(torch.zeros(2, 40, 76), [0], [320, 320], img_w=800)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_decoding_is_device_agnostic(device: str) -> None:
    torch.manual_seed(0)
    preds = torch.zeros(3, 40, 76)
    preds[..., 1] = torch.randn(3, 40) * 2
    preds[..., 2] = torch.rand(3, 40) * 0.3
    preds[..., 3] = 0.3 + torch.rand(3, 40) * 0.7
    preds[..., 4:] = torch.rand(3, 40, 1) + torch.randn(3, 40, 72) * 0.01
    expected = decode_predictions(preds, [0, 270, 160], [320, 590, 720], img_w=800)
    got = decode_predictions(preds.to(device), [0, 270, 160], [320, 590, 720], img_w=800)
    assert sum(len(lanes) for lanes in expected) > 3
    for a, b in zip(expected, got, strict=True):
        assert len(a) == len(b)
        for la, lb in zip(a, b, strict=True):
            np.testing.assert_allclose(la.points, lb.points, atol=1e-6)
    rows = to_nms_rows(preds[0].to(device), 800)
    assert lane_overlaps(rows, 50.0).device.type == device


def test_nms_comparing_kept_lanes_only_equals_the_all_pairs_kernel() -> None:
    # The kernel tests every pair, then suppresses greedily; decoding compares each kept lane
    # with the rest only. Many near-duplicate candidates, as an untrained model makes.
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 120))
        rows = np.zeros((n, 4 + P), dtype=np.float32)
        rows[:, 2] = rng.uniform(-2, 60, n)
        rows[:, 3] = rows[:, 2] + rng.uniform(-5, 71, n)
        rows[:, 4:] = rng.uniform(0, 800, (n, 1)) + rng.normal(0, 20, (n, P))
        overlaps = lane_overlaps(torch.from_numpy(rows), 50.0).numpy()
        suppressed, expected = np.zeros(n, dtype=bool), []
        for i in range(n):
            if not suppressed[i]:
                expected.append(i)
                suppressed |= overlaps[i]
        top_k = int(rng.integers(1, 17))
        assert lane_nms(rows, 50.0, top_k) == expected[:top_k]
