"""CLRNet model: size equal to the reference's, the prior layout, argument checks, training
steps (also with 16 lanes and under bf16 autocast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from src.models.clrnet import CLRNet, lane_targets
from src.models.clrnet.assign import assign
from tests.models.clrnet_golden import (
    REFERENCE_KEYS,
    REFERENCE_KEYS_DLA34,
    REFERENCE_KEYS_R34,
    initial_prior_params,
    priors_of,
)
from tests.models.srlane_golden import read_reference_keys

# Reference tensors that are buffers, not parameters.
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked", "sample_x_indexs",
            "prior_feat_ys", "prior_ys", "priors", "priors_on_featmap",
            "criterion.weight")  # fmt: skip


@pytest.mark.parametrize(
    ("backbone", "keys"),
    [
        ("resnet18", REFERENCE_KEYS),
        ("resnet34", REFERENCE_KEYS_R34),
        ("dla34", REFERENCE_KEYS_DLA34),
    ],
)
def test_parameter_count_is_the_references(backbone: str, keys: object) -> None:
    expected = sum(
        math.prod(shape)
        for key, shape, _ in read_reference_keys(keys)
        if not key.endswith(_BUFFERS)
    )
    model = CLRNet(backbone=backbone)
    assert sum(p.numel() for p in model.parameters()) == expected
    counts = {"resnet18": 11_774_387, "resnet34": 21_882_547, "dla34": 15_868_707}
    assert expected == counts[backbone]


def test_initial_priors_follow_the_reference_layout() -> None:
    head = CLRNet().head
    torch.testing.assert_close(
        head.prior_embeddings.weight.detach(), initial_prior_params(), rtol=0, atol=0
    )
    torch.testing.assert_close(head.priors, priors_of(initial_prior_params()), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.priors_on_featmap, head.priors[:, 6 + head.sample_x_indexs])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "resnet101"}, "not ported"),
        ({"fc_hidden_dim": 32}, "FPN width"),
        ({"refine_layers": 4}, "refine_layers"),
        ({"img_w": 810}, "multiples of 32"),
        ({"max_lanes": 5, "num_seg_classes": 5}, "at least max_lanes \\+ 1"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CLRNet(**kwargs)


W, H = 320, 128


def small_batch(max_lanes: int = 4, num_lanes: int = 3) -> dict[str, torch.Tensor]:
    """Two images: ``num_lanes`` fanning lanes and none."""
    lanes = [
        [
            (W * (0.05 + 0.9 * k / max(num_lanes - 1, 1)), H - 1.0),
            (W * (0.4 + 0.2 * k / num_lanes), H * 0.4),
        ]
        for k in range(num_lanes)
    ]
    targets = [lane_targets(image, W, H, max_lanes=max_lanes) for image in (lanes, [])]
    return {key: torch.from_numpy(np.stack([t[key] for t in targets])) for key in targets[0]}


@pytest.mark.slow  # ~5 s
def test_training_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = CLRNet(img_w=W, img_h=H).train()
    batch = small_batch()
    img = torch.rand(2, 3, H, W)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        out = model(img, **batch)
        assert set(out) == {"loss", "cls_loss", "reg_xytl_loss", "iou_loss", "seg_loss"}
        optimizer.zero_grad()
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]
    assert model.head.prior_embeddings.weight.grad.abs().sum() > 0  # priors are learnt
    with pytest.raises(ValueError, match="needs gt_lane and seg"):
        model(img)


def test_sixteen_lanes_are_assigned_and_decoded() -> None:
    torch.manual_seed(1)
    # A 5 px NMS distance: 16 lanes 50 px apart do not fit in 320 px.
    model = CLRNet(img_w=W, img_h=H, max_lanes=16, conf_threshold=0.0, nms_thres=5.0).train()
    batch = small_batch(max_lanes=16, num_lanes=16)
    assert batch["gt_lane"].shape == (2, 16, 78) and int(batch["gt_lane"][0, :, 1].sum()) == 16
    img = torch.rand(2, 3, H, W)
    stage_predictions, _ = model.head(model.neck(model.backbone(img)))
    gt_lane = batch["gt_lane"]
    matched, gt_index = assign(stage_predictions[-1], gt_lane, gt_lane[..., 1] == 1, W, H)
    assert sorted(set(gt_index[0][matched[0]].tolist())) == list(range(16))  # every lane
    assert not matched[1].any()
    assert torch.isfinite(model(img, **batch)["loss"])
    model.eval()
    with torch.no_grad():
        model.head.reg_layers.bias[3] = 0.5  # lanes half the image long (not ~0 as at init)
        lanes = model.decode(model(img), [0, 0], [H, H])
    assert len(lanes[0]) == 16  # the NMS keeps up to max_lanes


def test_bf16_autocast() -> None:
    torch.manual_seed(2)
    model = CLRNet(img_w=W, img_h=H).eval()
    img = torch.rand(1, 3, H, W)
    with torch.no_grad():
        reference = model(img)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(img)
    assert mixed.dtype == torch.float32
    assert (mixed[..., 6:] - reference[..., 6:]).abs().max() < 0.02  # ~1 px of 320
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 3, H, W), **small_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
