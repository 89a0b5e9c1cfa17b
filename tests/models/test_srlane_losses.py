"""Loss pieces on hand-made inputs: angle L1 (quirk and nominal), focal loss, LaneIoU, dynamic
top-k assignment, the start/length targets."""

from __future__ import annotations

import math

import pytest
import torch

from src.models.srlane.assign import dynamic_topk_assign
from src.models.srlane.lane_iou import lane_iou
from src.models.srlane.losses import SRLaneLoss, angle_loss, softmax_focal_loss

DY = 320 / 71


def test_angle_loss_reference_quirk_and_nominal_weights() -> None:
    shapes = [(2, 40, 100), (2, 20, 50), (2, 10, 25)]
    errors = [0.1, 0.2, 0.3]
    preds, targets = [], []
    for shape, error in zip(shapes, errors, strict=True):
        target = torch.zeros(shape)
        target[:, ::3, ::2] = 0.4  # cells with a lane
        pred = torch.full(shape, 0.9)  # far off where target is 0: ignored
        pred[target > 0] = 0.4 + error
        preds.append(pred)
        targets.append(target)
    levels = [
        e * (t > 0).sum().item() / ((t > 0).sum().item() + 1e-4)
        for e, t in zip(errors, targets, strict=True)
    ]
    quirk = angle_loss(preds, targets, [0.2, 0.2, 1.0], reference_quirk=True)
    nominal = angle_loss(preds, targets, [0.2, 0.2, 1.0], reference_quirk=False)
    assert quirk.item() == pytest.approx(0.04 * levels[0] + 0.2 * levels[1] + levels[2], rel=1e-5)
    assert nominal.item() == pytest.approx(0.2 * levels[0] + 0.2 * levels[1] + levels[2], rel=1e-5)
    empty = [torch.zeros(s) for s in shapes]
    assert angle_loss(preds, empty, [0.2, 0.2, 1.0]).item() == 0.0


def test_softmax_focal_loss_matches_its_formula() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.1], [-4.0, 4.0]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    got = softmax_focal_loss(logits, labels)
    for row, label, value in zip(logits, labels, got, strict=True):
        p = torch.softmax(row, 0) + 1e-6
        terms = -0.25 * (1 - p) ** 2 * torch.log(p)
        weights = torch.full((2,), 1e-6, dtype=torch.float64)
        weights[label] += 1
        assert value.item() == pytest.approx((weights * terms).sum().item(), rel=1e-12)
    # confident and right is nearly free; confident and wrong is not
    assert got[2] < 1e-5 and softmax_focal_loss(logits[2:], torch.tensor([0]))[0] > 1.0


def vertical(x: float) -> torch.Tensor:
    return torch.full((72,), x)


def test_lane_iou_of_parallel_vertical_lanes() -> None:
    assert lane_iou(vertical(300), vertical(300), 800).item() == pytest.approx(1.0)
    # half widths 7.5: shifted by 7.5 px -> overlap 7.5, union 22.5
    assert lane_iou(vertical(300), vertical(307.5), 800).item() == pytest.approx(1 / 3)
    # far apart: negative (gap / span)
    assert lane_iou(vertical(300), vertical(345), 800).item() == pytest.approx(-30 / 60)
    assert lane_iou(vertical(300), vertical(307.5), 800, width=30).item() == pytest.approx(
        52.5 / 67.5
    )


def test_lane_iou_widens_slanted_lanes_and_skips_rows_outside_the_target() -> None:
    slope = 3.0  # px per row
    pred = 100 + slope * torch.arange(72.0)
    target = pred + 5
    half = 7.5 * math.sqrt((2 * slope) ** 2 + DY**2) / DY
    expected = (2 * half - 5) / (2 * half + 5)
    assert lane_iou(pred, target, 800).item() == pytest.approx(expected, rel=1e-5)
    # rows where the target is outside the image do not count: moving the prediction there
    # changes nothing (row 40 still sets row 39's width, so start at 41)
    target_cut = target.clone()
    target_cut[40:] = -1e5
    prediction_far = pred.clone()
    prediction_far[41:] = 700
    cut = lane_iou(pred, target_cut, 800).item()
    assert lane_iou(prediction_far, target_cut, 800).item() == pytest.approx(cut, rel=1e-6)
    # ... and the last valid row falls back to the plain width (its upper neighbour is out)
    assert cut < expected


def test_lane_iou_pairwise_broadcast() -> None:
    preds = torch.stack([vertical(100), vertical(300), vertical(500)])
    targets = torch.stack([vertical(300), vertical(500)])
    pairwise = lane_iou(preds[:, None], targets[None], 800)
    assert pairwise.shape == (3, 2)
    assert pairwise[1, 0].item() == pytest.approx(1.0) and pairwise[2, 1].item() == pytest.approx(
        1.0
    )
    assert (pairwise[0] < 0).all()


def gt_row(x: float, start: float = 0.0, length: float = 72.0) -> torch.Tensor:
    row = torch.full((76,), -1e5)
    row[:4] = torch.tensor([0.0, 1.0, start, length])
    row[4:] = x
    return row


INVALID_ROW = torch.tensor([1.0, 0.0] + [-1e5] * 74)


def proposals(xs: list[float], logit: float = 0.0) -> torch.Tensor:
    """Proposals in loss units: [logits, start rows, length rows, xs in pixels]."""
    rows = torch.zeros(len(xs), 76)
    rows[:, 1] = logit
    rows[:, 4:] = torch.tensor(xs).unsqueeze(-1)
    return rows


def test_assignment_matches_each_lane_to_its_nearby_proposals() -> None:
    # k = int(sum of a lane's top-4 IoUs at width 7.5): lane 0 has three close proposals
    # (IoU 1, 0.88, 0.76: k = 2), lane 1 one exact and one 5 px off (1 + 0.5: k = 1).
    preds = proposals([100, 101, 102, 400, 405, 700, 50, 250]).unsqueeze(0)
    targets = torch.stack([gt_row(100), gt_row(400), INVALID_ROW]).unsqueeze(0)
    valid = targets[..., 1] == 1
    matched, gt_index = dynamic_topk_assign(preds, targets, valid, 800, DY)
    assert matched[0].nonzero().flatten().tolist() == [0, 1, 3]
    assert gt_index[0, [0, 1, 3]].tolist() == [0, 0, 1]


def test_assignment_gives_a_contested_proposal_to_its_cheapest_lane() -> None:
    # Lanes at 100 and 104.5 both have k = 2 and both take the proposal at 102, which is
    # closer to (cheaper for) the lane at 100.
    preds = proposals([101, 102, 103.5, 600, 650, 700, 750, 500]).unsqueeze(0)
    targets = torch.stack([gt_row(100), gt_row(104.5)]).unsqueeze(0)
    valid = torch.ones(1, 2, dtype=torch.bool)
    matched, gt_index = dynamic_topk_assign(preds, targets, valid, 800, DY)
    assert matched[0].nonzero().flatten().tolist() == [0, 1, 2]
    assert gt_index[0, :3].tolist() == [0, 0, 1]


def test_images_without_lanes_match_nothing() -> None:
    preds = proposals([100, 200, 300, 400]).unsqueeze(0)
    targets = INVALID_ROW.expand(1, 4, 76).clone()
    matched, _ = dynamic_topk_assign(preds, targets, targets[..., 1] == 1, 800, DY)
    assert not matched.any()


def make_loss(**overrides: float) -> SRLaneLoss:
    kwargs = dict(
        img_w=800, img_h=320, num_points=72, num_candidates=4, angle_loss_weight=5.0,
        cls_loss_weight=2.0, l1_loss_weight=0.2, iou_loss_weight=2.0,
        angle_level_weights=[0.2, 0.2, 1.0],
    )  # fmt: skip
    kwargs.update(overrides)
    return SRLaneLoss(**kwargs)


def test_length_target_follows_the_predicted_start() -> None:
    # One lane starting at row 10 with 40 rows; the only close proposal starts at row 12.3.
    # Its start rounds to 12, two rows late, so its length target is 40 - 2 = 38.
    xs = [100.0, 400.0, 500.0, 600.0, 700.0, 750.0, 300.0, 200.0]
    preds = proposals(xs)
    preds[:, 2:4] /= 71  # back to the model's units: fractions of the strips
    preds[:, 4:] /= 800
    preds[0, 2] = 12.3 / 71
    preds[0, 3] = 30.0 / 71
    target = torch.stack([gt_row(100.0, start=10.0, length=40.0), INVALID_ROW]).unsqueeze(0)
    losses = make_loss().roi_losses(preds.unsqueeze(0), target)

    def smooth_l1(d: float) -> float:
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    expected = (smooth_l1(12.3 - 10.0) + smooth_l1(30.0 - 38.0)) / 2
    assert losses["l1_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert losses["iou_loss"].item() == pytest.approx(0.0, abs=1e-5)  # identical xs


def test_image_without_lanes_adds_unnormalised_cls_loss_only() -> None:
    preds = torch.zeros(1, 40, 76)
    target = INVALID_ROW.expand(1, 4, 76).clone()
    losses = make_loss().roi_losses(preds, target)
    per_proposal = softmax_focal_loss(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))
    assert losses["cls_loss"].item() == pytest.approx(40 * per_proposal.item(), rel=1e-6)
    assert losses["l1_loss"].item() == 0.0 and losses["iou_loss"].item() == 0.0


def test_weighted_parts_and_total() -> None:
    torch.manual_seed(0)
    angles = [torch.rand(2, 40, 100), torch.rand(2, 20, 50), torch.rand(2, 10, 25)]
    gt_angle = [(torch.rand_like(a) > 0.9) * torch.rand_like(a) for a in angles]
    preds = torch.zeros(2, 40, 76)
    preds[..., 4:] = torch.rand(2, 40, 1)
    preds[..., 3] = 0.5
    gt_lane = torch.stack(
        [torch.stack([gt_row(300.0), gt_row(500.0), INVALID_ROW, INVALID_ROW])] * 2
    )
    plain = make_loss(
        angle_loss_weight=1.0, cls_loss_weight=1.0, l1_loss_weight=1.0, iou_loss_weight=1.0
    )
    weighted = make_loss()
    a = plain(angles, [preds], gt_angle, gt_lane)
    b = weighted(angles, [preds], gt_angle, gt_lane)
    for name, weight in (("angle_loss", 5), ("cls_loss", 2), ("l1_loss", 0.2), ("iou_loss", 2)):
        assert b[name].item() == pytest.approx(weight * a[name].item(), rel=1e-6)
    total = sum(b[k] for k in ("angle_loss", "cls_loss", "l1_loss", "iou_loss"))
    assert b["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    # Two stages: each part is the mean over stages (the reference divides by refine_layers).
    two = weighted(angles, [preds, preds], gt_angle, gt_lane)
    assert two["cls_loss"].item() == pytest.approx(b["cls_loss"].item(), rel=1e-6)


def test_iou_with_target_widths_corrects_a_jagged_prediction() -> None:
    """A prediction zig-zagging (two rows left, two right) around a straight target: with its
    own slope-adaptive widths its segments contain the target's, where LaneIoU has no gradient;
    with the target's widths every row is pulled towards the target."""
    target = torch.full((1, 72), 100.0)
    jag = torch.tensor([6.0, 6.0, -6.0, -6.0]).repeat(18).unsqueeze(0)
    grads = {}
    for from_target in (False, True):
        pred = (target + jag).requires_grad_(True)
        (
            1 - lane_iou(pred, target, 800, 7.5, DY, pred_width_from_target=from_target)
        ).sum().backward()
        grads[from_target] = pred.grad
    assert (grads[False][0, 1:-1] == 0).all()  # no signal for the jag
    pull = -grads[True][0] * jag[0]  # descent direction times the offset: < 0 pulls back
    assert (pull[1:-1] < 0).all()


def test_assignment_on_priors_uses_the_proposal_geometry() -> None:
    """Proposal 0 is a far-off prior whose refined lane lands on the target; proposal 1 is a
    prior on the target whose refinement went astray. The reference matches on the refined
    lanes (proposal 0); assign_on_priors matches on the priors (proposal 1)."""
    xs = torch.linspace(300, 400, 72)
    target = torch.full((1, 1, 76), -1e5)
    target[0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, 72.0])
    target[0, 0, 4:] = xs
    n = 6
    priors = torch.zeros(1, n, 76)
    priors[0, :, 4:] = (xs + torch.arange(n).view(-1, 1) * 120.0 + 600.0) / 800  # all far away
    priors[0, 1, 4:] = xs / 800  # proposal 1 starts on the lane
    refined = priors.clone()
    refined[0, 0, 4:] = xs / 800  # proposal 0's refinement reached the lane
    refined[0, 1, 4:] = (xs + 200.0) / 800
    for on_priors, expected in ((False, 0), (True, 1)):
        loss = SRLaneLoss(
            800, 320, 72, 1, 5.0, 2.0, 0.2, 2.0, [0.2, 0.2, 1.0], assign_on_priors=on_priors
        )
        scaled = torch.cat((refined[..., :2], refined[..., 2:4] * 71, refined[..., 4:] * 800), -1)
        matching = scaled
        if on_priors:
            matching = torch.cat((scaled[..., :4], priors[..., 4:] * 800), -1)
        matched, _ = dynamic_topk_assign(matching, target, target[..., 1] == 1, 800, DY, 1)
        assert matched[0].nonzero().flatten().tolist() == [expected]
        parts = loss.roi_losses(refined, target, priors)
        assert torch.isfinite(parts["iou_loss"])
