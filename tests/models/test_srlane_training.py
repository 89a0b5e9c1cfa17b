"""Training on the CPU: one batch overfits, every parameter gets a gradient, mixed precision
stays finite, cascades and empty images work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src.models.srlane import SRLane, lane_targets

# A small input keeps these fast; the proposal grid stays 4 x 10 (the stride-32 map is resized).
W, H = 160, 64
LANES = [
    [[(30.0, 63.0), (55.0, 30.0), (70.0, 5.0)], [(125.0, 63.0), (100.0, 25.0), (90.0, 5.0)]],
    [[(80.0, 63.0), (80.0, 0.0)]],
]


def batch(lanes: list = LANES, w: int = W, h: int = H) -> dict:
    targets = [lane_targets(image, img_w=w, img_h=h) for image in lanes]
    return {
        "img": torch.rand(len(lanes), 3, h, w, generator=torch.Generator().manual_seed(1)),
        "gt_lane": torch.from_numpy(np.stack([t[0] for t in targets])),
        "gt_angle": [torch.from_numpy(np.stack([t[1][i] for t in targets])) for i in range(3)],
    }


def model(**kwargs: object) -> SRLane:
    torch.manual_seed(0)
    return SRLane(img_w=W, img_h=H, **kwargs).train()


def test_one_fixed_batch_overfits() -> None:
    # Within 50 steps the loss (mean of 3 consecutive steps, so one lucky step does not count)
    # falls to half its first value; the loop stops there to keep the test fast.
    net, data = model(), batch()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-4)
    history = []
    for _ in range(50):
        out = net(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append(out["loss"].item())
        if len(history) >= 3 and np.mean(history[-3:]) <= 0.5 * history[0]:
            break
    assert all(np.isfinite(history))
    assert np.mean(history[-3:]) <= 0.5 * history[0], history


def test_gradients_reach_every_parameter() -> None:
    # The reference trains every parameter it uses (all but its unused shuffle_fc, frozen
    # here), so every trainable parameter must get a gradient. The key bias of the
    # segment attention adds the same q.b to all logits of a query, which the softmax cancels:
    # its gradient is zero up to rounding (in the reference too), so it is checked for presence.
    net, data = model(), batch()
    out = net(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    assert set(out) == {"loss", "angle_loss", "cls_loss", "l1_loss", "iou_loss"}
    out["loss"].backward()
    grads = {n: p.grad for n, p in net.named_parameters() if p.requires_grad}
    assert len(grads) == len(list(net.parameters())) - 2  # all but shuffle_fc
    assert [n for n, g in grads.items() if g is None] == []
    zero = [n for n, g in grads.items() if not g.abs().sum() and not n.endswith("k_proj.bias")]
    assert zero == []
    assert grads["refine_head.stages.0.attention.k_proj.weight"].abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_stay_finite_under_autocast(dtype: torch.dtype) -> None:
    net, data = model(), batch()
    with torch.autocast("cpu", dtype=dtype):
        out = net(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        predictions = net(data["img"])
    assert predictions.dtype == torch.float32 and torch.isfinite(predictions).all()


def test_batch_without_any_lane() -> None:
    net, data = model(), batch([[], []])
    out = net(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    assert out["angle_loss"].item() == 0.0
    assert out["l1_loss"].item() == 0.0 and out["iou_loss"].item() == 0.0
    assert out["cls_loss"].item() > 0
    out["loss"].backward()


def test_training_forward_needs_targets() -> None:
    with pytest.raises(ValueError, match="gt_lane and gt_angle"):
        model()(torch.rand(1, 3, H, W))


def test_two_refine_stages() -> None:
    net, data = model(refine_layers=2), batch()
    out = net(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    out["loss"].backward()
    assert all(
        p.grad is not None for p in net.refine_head.stages[0].parameters() if p.requires_grad
    )
    net.eval()
    with torch.no_grad():
        assert net(data["img"]).shape == (2, 40, 76)


def test_nominal_angle_weights_switch() -> None:
    data = batch()
    quirk = model()(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    nominal = model(angle_loss_reference_quirk=False)(
        data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"]
    )
    # same weights and input: only the angle part differs, and the nominal weights are larger
    assert nominal["angle_loss"].item() > quirk["angle_loss"].item()
    assert nominal["cls_loss"].item() == pytest.approx(quirk["cls_loss"].item())


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    net, data = model().eval(), batch()
    with torch.no_grad():
        expected = net(data["img"])
        torch.testing.assert_close(torch.compile(net)(data["img"]), expected, rtol=1e-4, atol=1e-4)
    eager = model()(data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"])
    compiled = torch.compile(model())(
        data["img"], gt_lane=data["gt_lane"], gt_angle=data["gt_angle"]
    )
    compiled["loss"].backward()
    for name, value in eager.items():
        torch.testing.assert_close(compiled[name], value, rtol=1e-4, atol=1e-5, msg=name)
