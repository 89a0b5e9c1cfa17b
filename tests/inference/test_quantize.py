"""src/inference/quantize.py: the int8 backbone of evaluation.int8 quantizes every convolution,
predicts like the fp32 model, and leaves the fp32 model as it was (SRLane and CLRNet, both with
a ResNet-18)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

from src.inference.quantize import quantize_backbone, require_torchao
from src.models.clrnet import CLRNet
from src.models.srlane import SRLane

pytest.importorskip("torchao", reason="the optional extra 'deploy' is not installed")

# ResNet-18: conv1, 16 block convolutions, 3 projection shortcuts.
RESNET18_CONVS = 20


def dequantized_weights(backbone: torch.nn.Module) -> int:
    """Convolution weights stored as int8 in the converted graph (one per-channel dequantize
    node each, feeding a convolution)."""
    return sum(
        1
        for node in backbone.graph.nodes
        if "dequantize_per_channel" in str(node.target)
        and any("conv" in str(user.target) for user in node.users)
    )


# The synthetic recipe's input size; CLRNet's rows hold xs / (img_w - 1) and logits, SRLane's xs
# / img_w and logits: the same tolerance suits both (measured: see the printed difference).
MODELS: dict[str, Callable[[], nn.Module]] = {
    "srlane": lambda: SRLane(img_w=320, img_h=128),
    "clrnet": lambda: CLRNet(img_w=320, img_h=128),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_backbone_quantizes_every_convolution_and_predicts_like_fp32(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.rand(2, 3, 128, 320, generator=generator) for _ in range(2)]
    quantized = quantize_backbone(model, calibration)

    assert dequantized_weights(quantized.backbone) == RESNET18_CONVS
    # The fp32 model is untouched: same module, same weights.
    assert type(model.backbone).__name__ == "ResNet"
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    # The converted graph runs as is (reference int8 arithmetic, no compile), at any batch size.
    img = torch.rand(3, 3, 128, 320, generator=generator)
    with torch.no_grad():
        expected, got = model(img), quantized(img)
    assert got.shape == expected.shape
    difference = float((got - expected).abs().max())
    print(f"{name}: int8 vs fp32 max abs difference {difference:.3g}")
    assert difference <= 0.05


def test_int8_needs_calibration_images() -> None:
    with pytest.raises(ValueError, match="at least one image batch"):
        quantize_backbone(SRLane(img_w=320, img_h=128).eval(), [])


def test_missing_torchao_says_which_extra_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "torchao"] + ["torchao"]:
        monkeypatch.setitem(sys.modules, name, None)  # None: the import raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[deploy\]'"):
        require_torchao()
