"""CLRNet's assignment and IoUs on crafted lanes: the reference's multi-match quirk and its fix,
dynamic k, Line IoU and CLRerNet's LaneIoU, images without lanes. (Numbers against the
reference: ``test_clrnet_fidelity.py::test_training_losses``.)"""

from __future__ import annotations

import numpy as np
import torch

from src.models.clrnet import lane_targets
from src.models.clrnet.assign import assign
from src.models.clrnet.lane_iou import clrernet_lane_iou, line_iou
from src.models.clrnet.losses import CLRNetLoss

P = 72


def vertical_prior(x: float, length: float = 49 / 71) -> torch.Tensor:
    """A prediction row for a vertical lane at pixel x, starting at the image bottom."""
    row = torch.zeros(6 + P)
    row[3], row[4], row[5] = x / 799, 0.5, length
    row[6:] = x / 799
    return row


def crafted() -> tuple[torch.Tensor, torch.Tensor]:
    """Lanes 1 (x 400) and 2 (x 403) both take prior 1 (x 402), which is cheaper for lane 2;
    lane 0 is far left, the last slot invalid."""
    lanes = [
        [(50.0, 319.0), (250.0, 100.0)],
        [(400.0, 319.0), (400.0, 100.0)],
        [(403.0, 319.0), (403.0, 100.0)],
    ]
    gt_lane = torch.from_numpy(lane_targets(lanes)["gt_lane"]).unsqueeze(0)
    lane0 = gt_lane[0, 0].clone()
    lane0[6:] = torch.where(lane0[6:] < -1e4, lane0[6:][lane0[6:] > -1e4][-1], lane0[6:]) / 799
    lane0[:2], lane0[3], lane0[5] = 0, lane0[3] / 799, lane0[5] / 71
    priors = [vertical_prior(x) for x in (399.0, 402.0, 405.0, 700.0, 720.0, 740.0)]
    return torch.stack([*priors, lane0]).unsqueeze(0), gt_lane


def test_the_reference_quirk_trains_a_contested_prior_towards_the_first_lane() -> None:
    predictions, gt_lane = crafted()
    valid = gt_lane[..., 1] == 1
    assert valid.tolist() == [[True, True, True, False]]
    matched, gt_index = assign(predictions, gt_lane, valid, 800, 320)
    # k = 2 for lanes 1 and 2 (top-4 Line IoUs sum to ~2.5): lane 1 takes priors 0 and 1,
    # lane 2 priors 1 and 2; the quirk leaves prior 1 matched to both -> the first, lane 1.
    assert matched[0].tolist() == [True, True, True, False, False, False, True]
    assert gt_index[0].tolist()[:3] == [1, 1, 2] and gt_index[0, 6] == 0
    matched, gt_index = assign(predictions, gt_lane, valid, 800, 320, unique_assignment=True)
    assert gt_index[0].tolist()[:3] == [1, 2, 2]  # the cheapest lane


def test_clrernet_cost_matches_by_lane_iou() -> None:
    predictions, gt_lane = crafted()
    valid = gt_lane[..., 1] == 1
    matched, gt_index = assign(predictions, gt_lane, valid, 800, 320, lane_iou_cost=True)
    assert matched[0, 6] and gt_index[0, 6] == 0  # lane 0 gets its copy
    assert not matched[0, 3:6].any()  # the far priors stay negatives
    assert set(gt_index[0][matched[0]].tolist()) == {0, 1, 2}


def test_line_iou() -> None:
    xs = torch.full((1, P), 400.0)
    assert line_iou(xs, xs, 800).item() == 1.0
    assert line_iou(xs + 30, xs, 800).item() == 0.0  # radius 15: segments just touch
    np.testing.assert_allclose(line_iou(xs + 10, xs, 800).item(), 20 / 40)
    target = xs.clone()
    target[0, 36:] = -1e5  # rows without target are ignored, whatever the prediction there
    shifted = xs.clone()
    shifted[0, 36:] += 200
    assert line_iou(shifted, target, 800).item() == 1.0


def test_clrernet_lane_iou_widens_slanted_lanes() -> None:
    rows = torch.arange(P, dtype=torch.float32)
    vertical = torch.full((1, P), 0.5)
    slanted = (0.2 + rows / P * 0.5).unsqueeze(0)  # 0.5 of the width over the height
    shift = 10 / 800
    iou_vertical = clrernet_lane_iou(vertical + shift, vertical, 7.5 / 800)
    iou_slanted = clrernet_lane_iou(slanted + shift, slanted, 7.5 / 800)
    np.testing.assert_allclose(iou_vertical.item(), 5 / 25, rtol=1e-5)  # half widths 7.5
    assert iou_slanted > 0.5  # slope-scaled widths: the same shift overlaps more
    # The cost variant only counts the prediction's own rows, plus the target's lone rows.
    start, end = torch.tensor([[0.0]]), torch.tensor([[0.5]])
    partial = clrernet_lane_iou(vertical, vertical, 7.5 / 800, start, end)
    np.testing.assert_allclose(partial.item(), 35 / 72, rtol=1e-5)  # rows 0..34 of 0..71


def test_an_image_without_lanes_only_has_a_classification_loss() -> None:
    predictions, gt_lane = crafted()
    empty = torch.from_numpy(lane_targets([])["gt_lane"]).unsqueeze(0)
    loss = CLRNetLoss(800, 320, P)
    parts = loss.stage_losses(predictions, empty)
    assert parts["reg_xytl_loss"] == 0 and parts["iou_loss"] == 0
    # every prior is a negative, summed without normalisation: 7 x focal(p = 0.5)
    focal = -0.25 * 0.5**2 * np.log(0.5 + 1e-6)
    np.testing.assert_allclose(parts["cls_loss"].item(), 7 * focal, rtol=1e-4)
    with_lanes = loss.stage_losses(predictions, gt_lane)
    assert with_lanes["iou_loss"] > 0 and with_lanes["reg_xytl_loss"] > 0
