"""SRLane structure: stage shapes, parameter count, MACs, constructor interface, proposals."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from src.models.common.resnet import ResNet
from src.models.srlane import SRLane, SRLaneConfig
from src.models.srlane.refine_head import RefineStage

# The reference R18 model, including its unused (here frozen) shuffle_fc Linear(192, 192),
# which is in its checkpoints and in the published 11.59 M.
R18_PARAMS = 11_594_576
SHUFFLE_FC_PARAMS = 192 * 192 + 192


@pytest.fixture(scope="module")
def r18() -> SRLane:
    torch.manual_seed(0)
    return SRLane().eval()


def test_stage_shapes_at_320x800(r18: SRLane) -> None:
    img = torch.rand(2, 3, 320, 800)
    with torch.no_grad():
        c3, c4, c5 = r18.backbone(img)
        assert c3.shape == (2, 128, 40, 100)
        assert c4.shape == (2, 256, 20, 50)
        assert c5.shape == (2, 512, 10, 25)
        feats = r18.neck([c3, c4, c5])
        assert [tuple(f.shape) for f in feats] == [
            (2, 64, 40, 100),
            (2, 64, 20, 50),
            (2, 64, 10, 25),
        ]
        angles = r18.sketch_head.angle_maps(feats)
        assert [tuple(a.shape) for a in angles] == [(2, 40, 100), (2, 20, 50), (2, 10, 25)]
        assert all(((a > 0) & (a < 1)).all() for a in angles)
        priors = r18.sketch_head.proposals(angles[-1])
        assert priors.shape == (2, 40, 76)
        stage = r18.refine_head.stages[0]
        pooled = stage.sample_features(feats[::-1], priors)
        assert pooled.shape == (2, 40, 36, 64)
        gathered = stage.gather(pooled.reshape(80, 36, 64))
        assert gathered.shape == (80, 192, 1)
        context = stage.attention(gathered.reshape(2, 40, 192))
        assert context.shape == (2, 40, 192)
        predictions = r18(img)
    assert predictions.shape == (2, 40, 76)
    assert predictions.dtype == torch.float32


def test_small_input_keeps_the_4x10_proposal_grid() -> None:
    model = SRLane(img_w=320, img_h=128).eval()
    with torch.no_grad():
        feats = model.neck(model.backbone(torch.rand(1, 3, 128, 320)))
        assert feats[-1].shape[-2:] == (4, 10)
        assert model(torch.rand(1, 3, 128, 320)).shape == (1, 40, 76)


def test_r18_parameter_count(r18: SRLane) -> None:
    params = sum(p.numel() for p in r18.parameters())
    assert params == R18_PARAMS
    assert abs(params - 11_590_000) <= 10_000
    frozen = [n for n, p in r18.named_parameters() if not p.requires_grad]
    assert frozen == [
        "refine_head.stages.0.shuffle_fc.weight",
        "refine_head.stages.0.shuffle_fc.bias",
    ]
    trainable = sum(p.numel() for p in r18.parameters() if p.requires_grad)
    assert trainable == R18_PARAMS - SHUFFLE_FC_PARAMS


def test_r18_macs(r18: SRLane) -> None:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        r18(torch.rand(1, 3, 320, 800))
    assert counter.get_total_flops() / 2e9 == pytest.approx(9.32, abs=0.01)


@pytest.mark.parametrize(
    ("name", "channels", "params"),
    [("resnet34", [128, 256, 512], 21_284_672), ("resnet50", [512, 1024, 2048], 23_508_032)],
)
def test_deeper_backbones(name: str, channels: list[int], params: int) -> None:
    backbone = ResNet(name)
    assert backbone.out_channels == channels
    # torchvision's resnet34 / resnet50 parameter counts without the classifier
    assert sum(p.numel() for p in backbone.parameters()) == params
    model = SRLane(backbone=name, img_w=320, img_h=128).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 320)).shape == (1, 40, 76)


def test_unknown_backbone_is_rejected() -> None:
    with pytest.raises(ValueError, match="resnet101"):
        ResNet("resnet101")


def test_constructor_takes_exactly_the_model_config_fields() -> None:
    fields = {f.name for f in dataclasses.fields(SRLaneConfig)} - {"_target_"}
    assert set(inspect.signature(SRLane).parameters) == fields
    defaults = SRLaneConfig()
    for name, param in inspect.signature(SRLane).parameters.items():
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        assert default == getattr(defaults, name), name


def test_hydra_instantiates_from_the_config_schema() -> None:
    cfg = OmegaConf.structured(SRLaneConfig(img_w=320, img_h=128, max_lanes=5))
    model = instantiate(cfg)
    assert isinstance(model, SRLane)
    assert model.max_lanes == 5
    assert model.criterion.delta_y == pytest.approx(128 / 71)


def test_vertical_and_diagonal_proposals(r18: SRLane) -> None:
    head = r18.sketch_head
    vertical = head.proposals(torch.full((1, 10, 25), 0.5))
    # x is the cell centre column on every row; every proposal starts at the bottom row
    centres = (torch.arange(10) + 0.5) / 10
    torch.testing.assert_close(vertical[0, :, 4:], centres.repeat(4).unsqueeze(-1).expand(40, 72))
    assert (vertical[0, :, 2] == 0).all()
    assert (vertical[0, :, [0, 1, 3]] == 0).all()

    # theta = 0.25: 45 degrees, x grows with y (cell units); the bottom-left cell (row 3,
    # column 0, centre (0.5, 0.5)) gives x = y, inside from the first row.
    diagonal = head.proposals(torch.full((1, 10, 25), 0.25))
    ys = torch.linspace(0, 4, 72)
    bottom_left = diagonal[0, 30]
    torch.testing.assert_close(bottom_left[4:], ys / 10, atol=1e-5, rtol=0)
    # The top-right cell (centre (9.5, 3.5)): x = y + 6, leaves the image at y = 4 -> always
    # inside; the top-left cell (0.5, 3.5): x = y - 3, first inside at y >= 3.
    top_left = diagonal[0, 0]
    first = int(torch.nonzero(top_left[4:] >= 0)[0])
    assert top_left[2].item() == pytest.approx(first / 71)
    assert ys[first] >= 3 > ys[first - 1]


def test_steep_angles_are_clamped(r18: SRLane) -> None:
    nearly_flat = r18.sketch_head.proposals(torch.full((1, 10, 25), 0.001))
    clamped = r18.sketch_head.proposals(torch.full((1, 10, 25), 0.05))
    torch.testing.assert_close(nearly_flat, clamped)


def test_level_weights_follow_z() -> None:
    stage = RefineStage()
    with torch.no_grad():
        stage.level_z.copy_(torch.linspace(0, 2, 36))
        weights = stage.level_weights()
    torch.testing.assert_close(weights.sum(-1), torch.ones(36))
    assert weights[0].argmax() == 0 and weights[-1].argmax() == 2
    expected = torch.softmax(torch.tensor([0.0, -0.5, -2.0]), 0)
    torch.testing.assert_close(weights[0], expected)
    assert math.isclose(stage.sample_rows[-1].item(), 71) and stage.sample_rows[-2].item() == 68
