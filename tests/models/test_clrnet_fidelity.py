"""A reference-format CLRNet checkpoint gives the reference's outputs.

``data/clrnet_golden.npz`` holds what the reference code (Turoad/CLRNet, run on the CPU; how, in
``clrnet_golden.py``) computed from the state dict that ``clrnet_golden.reference_state_dict()``
regenerates here: eval predictions, decoded lanes (CULane and TuSimple cut heights, 4 and 16 lanes;
R18 and DLA-34), targets of fixed lanes, the weighted training-loss parts and the embeddings'
gradient (also with CLRerNet's assignment and LaneIoU loss). The weights go through the same path a
user's file does: saved as ``{"net": {"module." + key: tensor}}`` and read with ``load_weights``.

Tolerances: with the reference's NCHW layout the float32 results agree to the last bits (losses
exactly, eval predictions within 1e-5, gradients within 1e-5 of their scale). With this model's
default NHWC layout convolutions round differently: eval predictions differ by ~2e-5 (limit
1e-3) and loss parts by ~1e-5 relative (limit 1e-4). The NHWC gradients are not compared: the
reference's loss has discrete steps (the rounded start row that shifts the length target, the
assignment), and 1e-5 differences move a few priors across one, changing their gradients by a
few percent (the same happens in NCHW when an operation's rounding changes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from src.models.clrnet import CLRNet, lane_targets, load_weights
from src.models.clrnet.targets import clip_like_imgaug
from tests.models.clrnet_golden import (
    CUTS,
    GOLDEN,
    GOLDEN_LANES,
    LANES_16,
    REFERENCE_KEYS_DLA34,
    TARGET_LANE_SETS,
    XS_EVERY,
    clip_cases,
    golden_inputs,
    reference_state_dict,
)

LOSS_NAMES = ["cls_loss", "reg_xytl_loss", "iou_loss", "seg_loss", "loss"]
CLRERNET = {"lane_iou_cost": True, "lane_iou_loss": True, "unique_assignment": True}


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN))


@pytest.fixture(scope="module")
def reference_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("golden") / "clrnet_r18_reference.pth"
    torch.save({"net": {"module." + k: v for k, v in reference_state_dict().items()}}, path)
    return path


def loaded(path: Path, nchw: bool = False, **kwargs: object) -> CLRNet:
    model = CLRNet(**kwargs)
    load_weights(model, path)
    if nchw:
        model.set_memory_format(torch.contiguous_format)
    return model


@pytest.fixture(scope="module")
def predictions(reference_file: Path) -> dict[str, torch.Tensor]:
    """Eval predictions in both layouts (one forward each for all eval tests)."""
    out = {}
    for layout in ("nhwc", "nchw"):
        model = loaded(reference_file, nchw=layout == "nchw").eval()
        with torch.no_grad():
            out[layout] = model(golden_inputs())
    return out


@pytest.mark.parametrize(("layout", "atol"), [("nhwc", 1e-3), ("nchw", 1e-5)])
def test_eval_predictions(predictions: dict, golden: dict, layout: str, atol: float) -> None:
    got = predictions[layout]
    assert got.shape == (2, 192, 78)
    np.testing.assert_allclose(got[..., :6].numpy(), golden["eval_head"], rtol=0, atol=atol)
    np.testing.assert_allclose(got[:, ::XS_EVERY, 6:].numpy(), golden["eval_xs"], atol=atol)


def decoded(model: CLRNet, predictions: torch.Tensor) -> list:
    """Lanes of each image for each cut setting, in the golden's order."""
    return [
        model.decode(predictions[i : i + 1], [cut], [ori])[0]
        for cut, ori in CUTS.values()
        for i in range(len(predictions))
    ]


def test_decoded_lanes(predictions: dict, golden: dict) -> None:
    lanes = decoded(CLRNet(), predictions["nhwc"])
    assert [len(image) for image in lanes] == golden["lanes_counts"].tolist()
    flat = [lane for image in lanes for lane in image]
    assert [len(lane) for lane in flat] == golden["lanes_lengths"].tolist()
    points = np.concatenate([lane.points for lane in flat])
    np.testing.assert_allclose(points, golden["lanes_points"], rtol=0, atol=1e-4)


def test_decoded_16_lanes(predictions: dict, golden: dict) -> None:
    model = CLRNet(max_lanes=16, conf_threshold=0.2)
    lanes = decoded(model, predictions["nhwc"])
    assert [len(image) for image in lanes] == golden["lanes16_counts"].tolist() == [16] * 4
    flat = [lane for image in lanes for lane in image]
    assert [len(lane) for lane in flat] == golden["lanes16_lengths"].tolist()
    ends = np.stack([lane.points[[0, -1]] for lane in flat])
    np.testing.assert_allclose(ends, golden["lanes16_ends"], rtol=0, atol=1e-4)


@pytest.mark.slow  # ~4 s: DLA-34 runs its first levels at full resolution
def test_dla34_eval_predictions_and_lanes(tmp_path: Path, golden: dict) -> None:
    path = tmp_path / "culane_dla34.pth"
    state = reference_state_dict(keys=REFERENCE_KEYS_DLA34)
    torch.save({"net": {"module." + k: v for k, v in state.items()}}, path)
    model = loaded(path, backbone="dla34").eval()
    with torch.no_grad():
        got = model(golden_inputs())
    np.testing.assert_allclose(got[..., :6].numpy(), golden["dla34_eval_head"], atol=1e-3)
    np.testing.assert_allclose(got[:, ::XS_EVERY, 6:].numpy(), golden["dla34_eval_xs"], atol=1e-3)
    lanes = decoded(model, got)
    assert [len(image) for image in lanes] == golden["dla34_lanes_counts"].tolist()
    flat = [lane for image in lanes for lane in image]
    assert [len(lane) for lane in flat] == golden["dla34_lanes_lengths"].tolist()
    points = np.concatenate([lane.points for lane in flat])
    np.testing.assert_allclose(points, golden["dla34_lanes_points"], rtol=0, atol=1e-4)


def test_targets(golden: dict) -> None:
    for index, lanes in enumerate(TARGET_LANE_SETS):
        got = lane_targets(lanes)["gt_lane"]
        np.testing.assert_allclose(got, golden["targets"][index], rtol=0, atol=1e-4, err_msg=index)
    got = lane_targets(LANES_16, max_lanes=16)["gt_lane"]
    np.testing.assert_allclose(got, golden["targets16"][0], rtol=0, atol=1e-4)


def test_clipping_is_imgaugs_to_the_bit(golden: dict) -> None:
    pieces = [clip_like_imgaug(case, 800, 320) for case in clip_cases()]
    assert [len(p) for p in pieces] == golden["clip_counts"].tolist()
    flat = [piece for case in pieces for piece in case]
    assert [len(piece) for piece in flat] == golden["clip_lengths"].tolist()
    np.testing.assert_array_equal(np.concatenate(flat), golden["clip_points"])


def train_step(model: CLRNet) -> dict[str, torch.Tensor]:
    """Weighted loss parts on GOLDEN_LANES with both dropouts off; backward of the total."""
    model.train()
    model.head.roi_gather.dropout.p = 0.0
    model.head.seg_decoder.dropout.p = 0.0
    targets = [lane_targets(lanes) for lanes in GOLDEN_LANES]
    batch = {key: torch.from_numpy(np.stack([t[key] for t in targets])) for key in targets[0]}
    out = model(golden_inputs(), **batch)
    out["loss"].backward()
    return out


# NHWC for the default model (what users run), NCHW (exact) for both variants.
@pytest.mark.slow  # ~5 s each at 800x320
@pytest.mark.parametrize(
    ("layout", "variant", "switches"),
    [("nhwc", "", {}), ("nchw", "", {}), ("nchw", "_clrernet", CLRERNET)],
)
def test_training_losses(
    reference_file: Path, golden: dict, layout: str, variant: str, switches: dict
) -> None:
    model = loaded(reference_file, nchw=layout == "nchw", **switches)
    out = train_step(model)
    got = np.array([out[name].item() for name in LOSS_NAMES])
    expected = golden["losses" + variant]
    np.testing.assert_allclose(got, expected, rtol=1e-4 if layout == "nhwc" else 1e-6)
    if layout == "nchw":
        grad_expected = golden["grad_embeddings" + variant]
        grad = model.head.prior_embeddings.weight.grad.numpy()
        scale = np.abs(grad_expected).max()
        # Every prior within 1% of the gradients' scale, all but 2 of them within 1e-5: on the
        # AMD EPYC (no AMX) one prior (41) crosses one of the loss's discrete steps (module
        # docstring) and its gradient moves by 0.034 (0.19% of the scale); on the Intel Xeon
        # none does. A wrong gradient formula would move many priors.
        np.testing.assert_allclose(grad, grad_expected, rtol=0, atol=1e-2 * scale)
        off = np.abs(grad - grad_expected).max(axis=1) > 1e-5 * scale
        assert off.sum() <= 2, np.flatnonzero(off)


def test_seg_mask_as_specified(golden: dict) -> None:
    counts = [
        np.bincount(lane_targets(lanes)["seg"].ravel(), minlength=5) for lanes in GOLDEN_LANES
    ]
    np.testing.assert_array_equal(np.stack(counts), golden["seg_counts"])
