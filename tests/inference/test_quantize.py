"""src/inference/quantize.py: evaluation.int8 turns the whole eval forward into one int8 graph
(every convolution and linear layer but FP32_MODULES, the stem's max pool on int8), a trained
model's int8 graph predicts like its fp32 model within stated tolerances, and the fp32 model is
left as it was."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from src.data import build_dataset, collate_lanes
from src.inference.quantize import quantize_model, require_torchao
from src.models.clrnet import PLUGIN as CLRNET
from src.models.clrnet import CLRNet
from src.models.srlane import PLUGIN as SRLANE
from src.models.srlane import SRLane
from tests.launcher_helpers import compose_cfg, tiny_run

pytest.importorskip("torchao", reason="the optional extra 'deploy' is not installed")

# ResNet-18: conv1, 16 block convolutions, 3 projection shortcuts; the neck's 3 and the sketch
# head's angle convolution (the one of its 3 used at inference). Linear layers of the refine
# head: the attention's query, its MLP (2), the class head (2) and the regression head (2).
CONVOLUTIONS, LINEARS = 20 + 3 + 1, 7
# A trained model's int8 graph against its fp32 model on the val images (320x128 input). Measured
# on the model below (30 steps; calibrated on 16 images), Intel Xeon with AMX: logits 0.009,
# start / length 0.014, x of a kept lane 6.5 px max and 0.58 px mean; backbone-only int8 (before
# issue 24): 0.010, 0.014, 6.7 px and 0.56 px. Calibrated on 4 images both reach ~13 px: few
# images, rough ranges. On the AMD EPYC (no AMX) the 30 fp32 steps end in another model (other
# kernels, other rounding), whose int8 graph is off by: logits 0.019, start / length 0.017, x 7.7
# px at the 99th percentile, 13.6 px max (one lane) and 1.01 px mean. The limits hold on both
# kinds; a broken int8 graph is off by tens of pixels.
LOGIT_TOLERANCE, START_LENGTH_TOLERANCE = 0.05, 0.03
X_P99_TOLERANCE_PX, X_TOLERANCE_PX, MEAN_X_TOLERANCE_PX = 10.0, 20.0, 1.5
TRAIN_STEPS = 30


def int8_weights(graph: torch.nn.Module, op: str) -> int:
    """Layers of kind ``op`` ("conv", "linear") whose weight the converted graph stores in int8
    (a per-channel dequantize node feeding them)."""
    return sum(
        1
        for node in graph.graph.nodes
        if "dequantize_per_channel" in str(node.target)
        and any(op in str(user.target) for user in node.users)
    )


def test_int8_graph_quantizes_every_layer_but_the_fp32_ones() -> None:
    torch.manual_seed(0)
    model = SRLane(img_w=320, img_h=128).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.rand(2, 3, 128, 320, generator=generator) for _ in range(2)]
    quantized = quantize_model(model, calibration, SRLANE.int8_fp32_modules)
    graph = quantized.graph
    # SRLane's int8_fp32_modules: the angle convolution and the regression head's last layer.
    assert int8_weights(graph, "conv") == CONVOLUTIONS - 1
    assert int8_weights(graph, "linear") == LINEARS - 1
    # The stem's max pool reads and writes int8 (dequantize -> max pool -> quantize).
    (pool,) = [n for n in graph.graph.nodes if "max_pool2d" in str(n.target)]
    assert "dequantize_per_tensor" in str(pool.args[0].target)
    assert all("quantize_per_tensor" in str(user.target) for user in pool.users)
    # The fp32 model is untouched: same modules, same weights.
    assert type(model.backbone).__name__ == "ResNet"
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)
    # The converted graph runs as is (reference int8 arithmetic, no compile), at any batch size.
    img = torch.rand(3, 3, 128, 320, generator=generator)
    with torch.no_grad():
        assert quantized(img).shape == model(img).shape
    with pytest.raises(ValueError, match="names no module of the model: head.nope"):
        quantize_model(model, calibration, fp32_modules=("head.nope",))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Many small ops: intra-op threads buy nothing, and on a busy machine every parallel region
    waits for a descheduled thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tiny_root: Path, one_thread: None) -> tuple[SRLane, torch.Tensor, torch.Tensor]:
    """The default recipe's model trained TRAIN_STEPS steps on the tiny synthetic set (~10 s on
    one core), its val images, and its train and test images for calibration."""
    cfg = compose_cfg(*tiny_run(tiny_root))
    torch.manual_seed(0)
    model = instantiate(cfg.model, pretrained_backbone=None).train()
    train = build_dataset(cfg.dataset, "train", True, 0, SRLANE.training_targets)
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(train, 4, shuffle=True, collate_fn=collate_lanes, generator=generator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = 0
    while steps < TRAIN_STEPS:
        for batch in loader:
            loss = model(batch["img"], gt_lane=batch["gt_lane"], gt_angle=batch["gt_angle"])
            optimizer.zero_grad()
            loss["loss"].backward()
            optimizer.step()
            steps += 1
    images = {}
    for split in ("val", "train", "test"):
        dataset = build_dataset(cfg.dataset, split, training=False, seed=0)
        images[split] = collate_lanes([dataset[i] for i in range(len(dataset))])["img"]
    return model.eval(), images["val"], torch.cat([images["train"], images["test"]])


@pytest.mark.slow
def test_trained_int8_graph_predicts_like_fp32(trained: tuple) -> None:
    model, val, calibration = trained
    quantized = quantize_model(model, [calibration], SRLANE.int8_fp32_modules)
    with torch.no_grad():
        expected, got = model(val), quantized(val)
    assert (got[..., :2] - expected[..., :2]).abs().max() <= LOGIT_TOLERANCE
    # The lanes fp32 would keep (score above the threshold): their x along the image, in input
    # pixels, and their start and length (fractions of the height).
    kept = expected[..., :2].softmax(-1)[..., 1] >= model.conf_threshold
    assert kept.sum() > 0  # trained enough to find lanes: the comparison means something
    x_error = (got[..., 4:] - expected[..., 4:])[kept].abs() * model.img_w
    assert x_error.quantile(0.99) <= X_P99_TOLERANCE_PX and x_error.max() <= X_TOLERANCE_PX
    assert x_error.mean() <= MEAN_X_TOLERANCE_PX
    assert (got[..., 2:4] - expected[..., 2:4])[kept].abs().max() <= START_LENGTH_TOLERANCE
    print(
        f"max |logit| {(got[..., :2] - expected[..., :2]).abs().max():.3f}, x error max "
        f"{x_error.max():.2f} px mean {x_error.mean():.2f} px over {int(kept.sum())} lanes"
    )


def test_int8_needs_calibration_images() -> None:
    with pytest.raises(ValueError, match="at least one image batch"):
        quantize_model(SRLane(img_w=320, img_h=128).eval(), [])


def test_clrnet_int8_graph_predicts_like_fp32() -> None:
    """CLRNet's backbone and neck as one int8 graph (its plugin's int8_scope), the head fp32, on
    random weights and images: within the tolerance of the trained SRLane check's logits."""
    torch.manual_seed(0)
    model = CLRNet(img_w=320, img_h=128).eval()
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.rand(2, 3, 128, 320, generator=generator) for _ in range(2)]
    quantized = quantize_model(model, calibration, CLRNET.int8_fp32_modules, CLRNET.int8_scope)
    # ResNet-18, and the FPN's 3 lateral and 3 output convolutions
    assert int8_weights(quantized.backbone.graph, "conv") == 20 + 6
    img = torch.rand(3, 3, 128, 320, generator=generator)
    with torch.no_grad():
        expected, got = model(img), quantized(img)
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= LOGIT_TOLERANCE


def test_missing_torchao_says_which_extra_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "torchao"] + ["torchao"]:
        monkeypatch.setitem(sys.modules, name, None)  # None: the import raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[deploy\]'"):
        require_torchao()
