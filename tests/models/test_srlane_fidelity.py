"""A reference-format checkpoint gives the reference's outputs.

``data/srlane_golden.npz`` holds what the reference code (passerer/SRLane, run on the CPU with
its CUDA NMS replaced by a line-by-line Python port) computed from the state dict that
``srlane_golden.reference_state_dict()`` regenerates here: eval predictions (logits, start and
length of all 40 proposals, the xs of every 4th proposal), decoded lanes (CULane and TuSimple
cut heights), and the weighted training-loss parts on ``GOLDEN_LANES``. The weights go through
the same path a user's file does: saved as ``{"net": {"module." + key: tensor}}`` and read back
with ``load_weights``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.srlane import SRLane, lane_targets, load_weights
from tests.models.srlane_golden import (
    GOLDEN,
    GOLDEN_LANES,
    golden_inputs,
    reference_state_dict,
)

CUT_HEIGHTS, ORI_HEIGHTS = [270, 160], [590, 720]


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> SRLane:
    path: Path = tmp_path_factory.mktemp("golden") / "reference.pth"
    torch.save({"net": {"module." + k: v for k, v in reference_state_dict().items()}}, path)
    net = SRLane()
    load_weights(net, path)
    return net


def test_eval_predictions_and_decoded_lanes(model: SRLane, golden: dict) -> None:
    model.eval()
    with torch.no_grad():
        predictions = model(golden_inputs())
    # Tolerances: float32 rounding differs with the memory layout (this model runs NHWC, the
    # reference NCHW), and these random weights amplify it: logits reach |10|.
    head = predictions[..., :4].numpy()
    np.testing.assert_allclose(head[..., :2], golden["eval_head"][..., :2], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(head[..., 2:], golden["eval_head"][..., 2:], atol=1e-4)
    np.testing.assert_allclose(predictions[:, ::4, 4:].numpy(), golden["eval_xs"], atol=1e-4)

    lanes = model.decode(predictions, CUT_HEIGHTS, ORI_HEIGHTS)
    assert [len(image) for image in lanes] == golden["lane_counts"].tolist()
    flat = [lane for image in lanes for lane in image]
    assert [len(lane) for lane in flat] == golden["lane_lengths"].tolist()
    np.testing.assert_allclose(
        np.concatenate([lane.points for lane in flat]), golden["lane_points"], atol=1e-4
    )


def test_training_losses(model: SRLane, golden: dict) -> None:
    targets = [lane_targets(lanes) for lanes in GOLDEN_LANES]
    gt_lane = torch.from_numpy(np.stack([t[0] for t in targets]))
    gt_angle = [torch.from_numpy(np.stack([t[1][i] for t in targets])) for i in range(3)]
    model.train()
    out = model(golden_inputs(), gt_lane=gt_lane, gt_angle=gt_angle)
    names = ["angle_loss", "cls_loss", "l1_loss", "iou_loss", "loss"]
    got = np.array([out[name].item() for name in names])
    np.testing.assert_allclose(got, golden["losses"], rtol=1e-4)
